#include "pbllm/tokenizer/sentencepiece.h"

#include <cstring>
#include <fstream>
#include <iterator>
#include <queue>

#include "pbllm/core/check.h"

namespace pbllm::tokenizer {
namespace {

const std::string kSpaceMark = "\xE2\x96\x81";  // U+2581, sentencepiece's visible space

// A minimal protobuf wire-format reader: varints, 32-bit floats, and
// length-delimited fields (strings and nested messages).
class ProtoReader {
 public:
  ProtoReader(std::string_view bytes, const std::string& source) : bytes_(bytes), source_(source) {}
  bool done() const { return position_ >= bytes_.size(); }

  // Reads the next field's number and wire type.
  std::pair<uint32_t, uint32_t> tag() {
    const uint64_t key = varint();
    return {static_cast<uint32_t>(key >> 3), static_cast<uint32_t>(key & 7)};
  }
  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      PBLLM_CHECK(position_ < bytes_.size(), source_, ": truncated protobuf (varint past the end)");
      const uint8_t byte = static_cast<uint8_t>(bytes_[position_++]);
      value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if (!(byte & 0x80)) return value;
    }
    throw Error(str_cat(source_, ": malformed protobuf varint"));
  }
  float fixed32_float() {
    PBLLM_CHECK(position_ + 4 <= bytes_.size(), source_, ": truncated protobuf (float past the end)");
    float value;
    std::memcpy(&value, bytes_.data() + position_, 4);
    position_ += 4;
    return value;
  }
  std::string_view bytes() {
    const uint64_t length = varint();
    PBLLM_CHECK(length <= bytes_.size() - position_, source_, ": truncated protobuf (field of ", length,
                " bytes past the end)");
    const std::string_view field = bytes_.substr(position_, length);
    position_ += length;
    return field;
  }
  void skip(uint32_t wire_type) {
    switch (wire_type) {
      case 0: varint(); return;
      case 1: advance(8); return;
      case 2: bytes(); return;
      case 5: advance(4); return;
      default: throw Error(str_cat(source_, ": unsupported protobuf wire type ", wire_type));
    }
  }

 private:
  void advance(size_t count) {
    PBLLM_CHECK(count <= bytes_.size() - position_, source_, ": truncated protobuf");
    position_ += count;
  }
  std::string_view bytes_;
  const std::string& source_;
  size_t position_ = 0;
};

Piece parse_piece(std::string_view bytes, const std::string& source) {
  ProtoReader reader(bytes, source);
  Piece piece;
  while (!reader.done()) {
    const auto [field, wire] = reader.tag();
    if (field == 1 && wire == 2) piece.text = std::string(reader.bytes());
    else if (field == 2 && wire == 5) piece.score = reader.fixed32_float();
    else if (field == 3 && wire == 0) piece.type = static_cast<PieceType>(reader.varint());
    else reader.skip(wire);
  }
  return piece;
}

void parse_trainer_spec(std::string_view bytes, SentencePieceModel& model, const std::string& source) {
  ProtoReader reader(bytes, source);
  while (!reader.done()) {
    const auto [field, wire] = reader.tag();
    if (wire != 0) {
      reader.skip(wire);
      continue;
    }
    const int64_t value = static_cast<int64_t>(reader.varint());
    switch (field) {
      case 3: model.model_type = static_cast<int>(value); break;
      case 24: PBLLM_CHECK(value == 0, source, ": treat_whitespace_as_suffix is not supported"); break;
      case 35: model.byte_fallback = value != 0; break;
      case 40: model.unk_id = static_cast<int32_t>(value); break;
      case 41: model.bos_id = static_cast<int32_t>(value); break;
      case 42: model.eos_id = static_cast<int32_t>(value); break;
      case 43: model.pad_id = static_cast<int32_t>(value); break;
      default: break;
    }
  }
}

void parse_normalizer_spec(std::string_view bytes, SentencePieceModel& model, const std::string& source) {
  ProtoReader reader(bytes, source);
  while (!reader.done()) {
    const auto [field, wire] = reader.tag();
    if (field == 1 && wire == 2) model.normalizer_name = std::string(reader.bytes());
    else if (field == 2 && wire == 2) model.has_precompiled_charsmap = !reader.bytes().empty();
    else if (field == 3 && wire == 0) model.add_dummy_prefix = reader.varint() != 0;
    else if (field == 4 && wire == 0) model.remove_extra_whitespaces = reader.varint() != 0;
    else if (field == 5 && wire == 0) model.escape_whitespaces = reader.varint() != 0;
    else reader.skip(wire);
  }
}

size_t utf8_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;  // a stray byte is a character of its own
}

// One piece of the word being merged: a byte range and its linked-list neighbours.
struct Symbol {
  size_t start, length;
  int prev, next;
};

struct Candidate {
  float score;
  int left;
  size_t length;  // of the merged piece, to detect stale entries
  bool operator<(const Candidate& other) const {
    // priority_queue pops the largest: highest score, then leftmost.
    return score != other.score ? score < other.score : left > other.left;
  }
};

}  // namespace

SentencePieceModel SentencePieceModel::parse(const std::string& bytes, const std::string& source) {
  SentencePieceModel model;
  ProtoReader reader(bytes, source);
  while (!reader.done()) {
    const auto [field, wire] = reader.tag();
    if (field == 1 && wire == 2) model.pieces.push_back(parse_piece(reader.bytes(), source));
    else if (field == 2 && wire == 2) parse_trainer_spec(reader.bytes(), model, source);
    else if (field == 3 && wire == 2) parse_normalizer_spec(reader.bytes(), model, source);
    else reader.skip(wire);
  }
  PBLLM_CHECK(!model.pieces.empty(), source, ": no pieces (not a SentencePiece model?)");
  PBLLM_CHECK(model.model_type == 2, source, ": model_type ", model.model_type,
              " is not BPE (2); only SentencePiece BPE models are supported");
  PBLLM_CHECK(!model.has_precompiled_charsmap, source, ": normalizer '", model.normalizer_name,
              "' with a precompiled charsmap is not supported (identity only)");
  return model;
}

SentencePieceBpe::SentencePieceBpe(SentencePieceModel model, std::string source)
    : model_(std::move(model)), source_(std::move(source)) {
  std::fill(std::begin(byte_piece_), std::end(byte_piece_), -1);
  for (size_t id = 0; id < model_.pieces.size(); ++id) {
    const Piece& piece = model_.pieces[id];
    const auto index = static_cast<int32_t>(id);
    if (piece.type == PieceType::byte) {
      unsigned value = 0;
      if (std::sscanf(piece.text.c_str(), "<0x%02X>", &value) == 1 && value < 256) byte_piece_[value] = index;
      continue;
    }
    if (piece.type == PieceType::control) continue;  // <s>, </s>: never produced by merges
    piece_id_.emplace(piece.text, index);
    if (piece.type == PieceType::user_defined) max_user_defined_length_ = std::max(max_user_defined_length_, piece.text.size());
    // Does U+2581 follow another character anywhere in this piece?
    for (size_t at = piece.text.find(kSpaceMark, 1); at != std::string::npos; at = piece.text.find(kSpaceMark, at + 1))
      if (at < kSpaceMark.size() ||  // a shorter character before it (found by the fuzzer)
          piece.text.compare(at - kSpaceMark.size(), kSpaceMark.size(), kSpaceMark) != 0)
        words_are_independent_ = false;
  }
}

std::unique_ptr<SentencePieceBpe> SentencePieceBpe::from_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  PBLLM_CHECK(in.good(), path.string(), ": cannot open");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return std::make_unique<SentencePieceBpe>(SentencePieceModel::parse(bytes, path.string()),
                                            path.filename().string());
}

int32_t SentencePieceBpe::token_id(const std::string& piece) const {
  for (size_t id = 0; id < model_.pieces.size(); ++id)
    if (model_.pieces[id].text == piece) return static_cast<int32_t>(id);
  return -1;
}

std::string SentencePieceBpe::description() const {
  return str_cat("SentencePiece BPE (", source_, ", ", model_.pieces.size(), " pieces)");
}

std::string SentencePieceBpe::normalize(std::string_view text) const {
  std::string spaced;
  if (model_.remove_extra_whitespaces) {
    // Strip both ends and collapse inner runs of spaces to one.
    bool pending_space = false;
    for (char c : text) {
      if (c == ' ') {
        pending_space = !spaced.empty();
        continue;
      }
      if (pending_space) spaced += ' ';
      pending_space = false;
      spaced += c;
    }
  } else {
    spaced = std::string(text);
  }
  if (spaced.empty()) return spaced;
  if (model_.add_dummy_prefix) spaced.insert(spaced.begin(), ' ');
  if (!model_.escape_whitespaces) return spaced;
  std::string escaped;
  escaped.reserve(spaced.size() + spaced.size() / 2);
  for (char c : spaced) c == ' ' ? escaped += kSpaceMark : escaped += c;
  return escaped;
}

void SentencePieceBpe::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  // Characters (user-defined pieces, longest first, stay whole and never merge).
  std::vector<Symbol> symbols;
  std::vector<bool> frozen;
  for (size_t at = 0; at < word.size();) {
    size_t length = std::min(utf8_length(static_cast<unsigned char>(word[at])), word.size() - at);
    bool user_defined = false;
    for (size_t span = std::min(max_user_defined_length_, word.size() - at); span > 0 && !user_defined; --span) {
      auto found = piece_id_.find(std::string(word.substr(at, span)));
      if (found != piece_id_.end() && model_.pieces[found->second].type == PieceType::user_defined) {
        length = span;
        user_defined = true;
      }
    }
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({at, length, index - 1, index + 1});
    frozen.push_back(user_defined);
    at += length;
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  std::priority_queue<Candidate> agenda;
  auto consider = [&](int left) {
    if (left < 0) return;
    const int right = symbols[left].next;
    if (right < 0 || frozen[left] || frozen[right]) return;
    const size_t length = symbols[left].length + symbols[right].length;
    auto found = piece_id_.find(std::string(word.substr(symbols[left].start, length)));
    if (found == piece_id_.end() || model_.pieces[found->second].type == PieceType::unknown) return;
    agenda.push({model_.pieces[found->second].score, left, length});
  };
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) consider(i);
  while (!agenda.empty()) {
    const Candidate best = agenda.top();
    agenda.pop();
    Symbol& left = symbols[best.left];
    // Stale: the left symbol was merged away or has grown since this entry was made.
    if (left.length == 0 || left.next < 0 || left.length + symbols[left.next].length != best.length) continue;
    Symbol& right = symbols[left.next];
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = best.left;
    consider(left.prev);
    consider(best.left);
  }
  for (int i = 0; i >= 0; i = symbols[i].next) {
    const std::string piece(word.substr(symbols[i].start, symbols[i].length));
    if (auto found = piece_id_.find(piece); found != piece_id_.end()) {
      out.push_back(found->second);
    } else if (model_.byte_fallback) {
      for (unsigned char byte : piece) {
        PBLLM_CHECK(byte_piece_[byte] >= 0, source_, ": byte fallback needs the piece <0x", std::hex, int(byte), ">");
        out.push_back(byte_piece_[byte]);
      }
    } else {
      out.push_back(model_.unk_id);
    }
  }
}

void SentencePieceBpe::encode_stretch(std::string_view text, std::vector<int32_t>& out, WordCache& cache) const {
  const std::string normalized = normalize(text);
  if (!words_are_independent_) {
    encode_word(normalized, out);
    return;
  }
  // A word starts at a U+2581 that follows another character: no piece spans
  // such a boundary, so each word merges alone and repeats come from the cache.
  const std::string_view all(normalized);
  size_t start = 0;
  for (size_t at = 0; at <= all.size();) {
    const bool boundary = at == all.size() ||
                          (at > start && all.compare(at, kSpaceMark.size(), kSpaceMark) == 0 &&
                           (at < kSpaceMark.size() ||
                            all.compare(at - kSpaceMark.size(), kSpaceMark.size(), kSpaceMark) != 0));
    if (boundary) {
      auto [it, inserted] = cache.try_emplace(std::string(all.substr(start, at - start)));
      if (inserted) encode_word(it->first, it->second);
      out.insert(out.end(), it->second.begin(), it->second.end());
      start = at;
      if (at == all.size()) break;
    }
    at += utf8_length(static_cast<unsigned char>(all[at]));
  }
}

std::string SentencePieceBpe::decode(const std::vector<int32_t>& ids) const {
  std::string text;
  for (int32_t id : ids) {
    PBLLM_CHECK(id >= 0 && id < static_cast<int32_t>(model_.pieces.size()), "decode: id ", id, " is not in ", source_);
    const Piece& piece = model_.pieces[id];
    if (piece.type == PieceType::control) continue;
    if (piece.type == PieceType::byte) {
      unsigned value = 0;
      std::sscanf(piece.text.c_str(), "<0x%02X>", &value);
      text += static_cast<char>(value);
      continue;
    }
    text += piece.type == PieceType::unknown ? std::string(" \xE2\x81\x87 ") : piece.text;  // sentencepiece's ⁇
  }
  std::string spaced;
  for (size_t at = 0; at < text.size();) {
    if (text.compare(at, kSpaceMark.size(), kSpaceMark) == 0) {
      spaced += ' ';
      at += kSpaceMark.size();
    } else {
      spaced += text[at++];
    }
  }
  if (model_.add_dummy_prefix && !spaced.empty() && spaced[0] == ' ') spaced.erase(0, 1);
  return spaced;
}

}  // namespace pbllm::tokenizer
