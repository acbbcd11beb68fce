// Tokenizers that give the token ids the reference got from transformers 4.35's
// slow tokenizers: the checkpoint's special tokens are found in the raw text
// and emitted as their ids (spaces around them kept); every stretch of text
// between them is encoded on its own; BOS is prepended once to the whole text.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace pbllm::tokenizer {

struct SpecialToken {
  std::string text;
  int32_t id;
};

// Words already encoded during one encode() call: natural text repeats its
// words, so each distinct word is merged once.
using WordCache = std::unordered_map<std::string, std::vector<int32_t>>;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Picks the tokenizer from a checkpoint folder's files: tokenizer.model
  // (SentencePiece), else tokenizer.json (byte-level BPE), else vocab.json +
  // merges.txt (GPT-2 BPE), with tokenizer_config.json / special_tokens_map.json
  // for the special tokens and BOS. None of them: a clear error.
  static std::unique_ptr<Tokenizer> from_directory(const std::filesystem::path& dir);

  // The reference's ids for a whole text (BOS first when the tokenizer adds one).
  std::vector<int32_t> encode(std::string_view text) const;
  // The same without BOS (as llama.cpp's test vectors and add_special_tokens=False).
  std::vector<int32_t> encode_without_bos(std::string_view text) const;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;

  std::optional<int32_t> bos_id() const { return bos_id_; }
  const std::vector<SpecialToken>& special_tokens() const { return special_tokens_; }
  // e.g. "SentencePiece BPE (tokenizer.model, 32000 pieces)"
  virtual std::string description() const = 0;
  // id of a vocabulary token, or -1.
  virtual int32_t token_id(const std::string& token) const = 0;

  // Set by from_directory from the config files. Special tokens are matched
  // longest first, so "<unk>" wins over a shorter token at the same place.
  void set_special_tokens(std::vector<SpecialToken> tokens);
  void set_bos_id(std::optional<int32_t> id) { bos_id_ = id; }

 protected:
  // Encodes text that holds no special token, appending to `out`.
  virtual void encode_stretch(std::string_view text, std::vector<int32_t>& out, WordCache& cache) const = 0;
  std::vector<SpecialToken> special_tokens_;
  std::optional<int32_t> bos_id_;
};

}  // namespace pbllm::tokenizer
