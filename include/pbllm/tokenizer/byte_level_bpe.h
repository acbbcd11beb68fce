// Byte-level BPE (GPT-2, OPT, SmolLM2 / LLaMA-3 style tokenizer.json): text is
// split by the GPT-2 pre-tokenizer regex (PCRE2 with JIT), each piece's bytes
// mapped to GPT-2's printable byte alphabet, then merged by merge rank.
#pragma once

#include <array>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pbllm/tokenizer/tokenizer.h"

namespace pbllm::tokenizer {

struct ByteLevelBpeOptions {
  bool split_digits = false;   // tokenizer.json Digits(individual_digits=true) before the regex
  bool ignore_merges = false;  // a word that is itself in the vocabulary is emitted whole
};

class ByteLevelBpe : public Tokenizer {
 public:
  // vocab: byte-level token string -> id; merges in rank order.
  ByteLevelBpe(const std::unordered_map<std::string, int32_t>& vocab,
               const std::vector<std::pair<std::string, std::string>>& merges, ByteLevelBpeOptions options,
               std::string source);
  ~ByteLevelBpe() override;

  // vocab.json + merges.txt (GPT-2 and OPT checkpoints).
  static std::unique_ptr<ByteLevelBpe> from_vocab_and_merges(const std::filesystem::path& vocab_json,
                                                             const std::filesystem::path& merges_txt);
  // A tokenizer.json whose model is BPE with a ByteLevel pre-tokenizer.
  static std::unique_ptr<ByteLevelBpe> from_tokenizer_json(const std::filesystem::path& tokenizer_json);

  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string description() const override;
  int32_t token_id(const std::string& token) const override;

 protected:
  void encode_stretch(std::string_view text, std::vector<int32_t>& out, WordCache& cache) const override;

 private:
  struct Regex;
  static std::unique_ptr<Regex> compile_regex(const char* pattern);
  // Calls on_match for each match of `regex` in text, on_gap for the text between.
  static void scan(const Regex& regex, std::string_view text, const std::function<void(std::string_view)>& on_gap,
                   const std::function<void(std::string_view)>& on_match);
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  void pre_tokenize(std::string_view text, const std::function<void(std::string_view)>& emit) const;

  ByteLevelBpeOptions options_;
  std::string source_;
  std::unique_ptr<Regex> regex_;   // the GPT-2 pre-tokenizer
  std::unique_ptr<Regex> digits_;  // \p{N}, for split_digits
  // Symbols are every vocabulary token and every merge result, by index.
  std::unordered_map<std::string, int32_t> symbol_index_;
  std::vector<int32_t> symbol_id_;  // symbol -> vocabulary id (-1: not in the vocabulary)
  std::array<int32_t, 256> byte_symbol_{};
  // (left << 32 | right) -> (rank, merged symbol)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  std::unordered_map<int32_t, std::string> id_token_;
  int32_t unk_id_ = -1;
};

// GPT-2's map from bytes to printable code points, as UTF-8 strings.
const std::array<std::string, 256>& byte_level_alphabet();

}  // namespace pbllm::tokenizer
