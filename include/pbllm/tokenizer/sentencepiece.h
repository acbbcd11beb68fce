// SentencePiece BPE (LLaMA's tokenizer.model), read without libsentencepiece
// (its bundled protobuf crashes processes that also load LibTorch): the model
// is a small protobuf parsed here, and encoding follows sentencepiece's BPE:
// normalise (dummy prefix, whitespace as U+2581), split into characters, merge
// the adjacent pair whose union has the highest score (leftmost on ties), and
// spell pieces that are not in the vocabulary as <0xXX> byte pieces.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "pbllm/tokenizer/tokenizer.h"

namespace pbllm::tokenizer {

enum class PieceType { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

struct Piece {
  std::string text;
  float score = 0;
  PieceType type = PieceType::normal;
};

struct SentencePieceModel {
  std::vector<Piece> pieces;
  int model_type = 2;  // 1 unigram, 2 BPE, 3 word, 4 char
  bool byte_fallback = false;
  int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
  std::string normalizer_name;
  bool has_precompiled_charsmap = false;

  // Parses a ModelProto; a truncated or malformed file names the problem.
  static SentencePieceModel parse(const std::string& bytes, const std::string& source);
};

class SentencePieceBpe : public Tokenizer {
 public:
  SentencePieceBpe(SentencePieceModel model, std::string source);
  static std::unique_ptr<SentencePieceBpe> from_file(const std::filesystem::path& path);

  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string description() const override;
  int32_t token_id(const std::string& piece) const override;
  const SentencePieceModel& model() const { return model_; }

 protected:
  void encode_stretch(std::string_view text, std::vector<int32_t>& out, WordCache& cache) const override;

 private:
  std::string normalize(std::string_view text) const;
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  SentencePieceModel model_;
  std::string source_;
  std::unordered_map<std::string, int32_t> piece_id_;  // normal, user-defined and unknown pieces
  int32_t byte_piece_[256];
  size_t max_user_defined_length_ = 0;
  // Words (a run of U+2581 and what follows up to the next U+2581) can be
  // encoded apart only when no piece has U+2581 after another character.
  bool words_are_independent_ = true;
};

}  // namespace pbllm::tokenizer
