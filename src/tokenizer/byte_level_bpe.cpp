#include "pbllm/tokenizer/byte_level_bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fstream>
#include <limits>

#include "pbllm/core/check.h"
#include "pbllm/io/checkpoint.h"

namespace pbllm::tokenizer {
namespace {

// GPT-2's pre-tokenizer: contractions, letters, numbers, other symbols (each
// with one optional leading space), then whitespace not followed by
// non-whitespace (the lookahead leaves a single space to prefix the next word).
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

void append_utf8(std::string& out, uint32_t code_point) {
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
}

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

}  // namespace

const std::array<std::string, 256>& byte_level_alphabet() {
  // Printable Latin-1 bytes map to themselves; the other 68 bytes to 256 + n.
  static const std::array<std::string, 256> alphabet = [] {
    std::array<std::string, 256> table;
    uint32_t next = 256;
    for (uint32_t byte = 0; byte < 256; ++byte) {
      const bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
      append_utf8(table[byte], printable ? byte : next++);
    }
    return table;
  }();
  return alphabet;
}

struct ByteLevelBpe::Regex {
  pcre2_code* code = nullptr;
  ~Regex() { pcre2_code_free(code); }
};

namespace {
// Match state per call, so one tokenizer can encode on several threads at once.
struct MatchData {
  explicit MatchData(const pcre2_code* code) : data(pcre2_match_data_create_from_pattern(code, nullptr)) {}
  ~MatchData() { pcre2_match_data_free(data); }
  pcre2_match_data* data;
};
}  // namespace

std::unique_ptr<ByteLevelBpe::Regex> ByteLevelBpe::compile_regex(const char* pattern) {
  auto regex = std::make_unique<Regex>();
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  // UCP: \s, \p{L}, \p{N} by Unicode properties. MATCH_INVALID_UTF: a stray
  // invalid byte is matched as a character instead of failing the whole text.
  regex->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error_code, &error_offset, nullptr);
  PBLLM_CHECK(regex->code != nullptr, "cannot compile the pre-tokenizer regex ", pattern, " (PCRE2 error ", error_code,
              ")");
  pcre2_jit_compile(regex->code, PCRE2_JIT_COMPLETE);  // pcre2_match uses it; the interpreter runs without it
  return regex;
}

ByteLevelBpe::ByteLevelBpe(const std::unordered_map<std::string, int32_t>& vocab,
                           const std::vector<std::pair<std::string, std::string>>& merges,
                           ByteLevelBpeOptions options, std::string source)
    : options_(options), source_(std::move(source)) {
  // As Hugging Face's BPE builder: a merge's two parts and its result are
  // tokens; without merges every word would fall apart into bytes.
  PBLLM_CHECK(!vocab.empty(), source_, ": the vocabulary is empty");
  PBLLM_CHECK(!merges.empty(), source_, ": there are no merges (every word would be split into single bytes)");
  for (const auto& [token, id] : vocab)
    PBLLM_CHECK(id >= 0, source_, ": token '", token.substr(0, 40), "' has the negative id ", id);
  for (const auto& [left, right] : merges)
    for (const std::string& part : {left, right, left + right})
      PBLLM_CHECK(vocab.count(part), source_, ": merge '", left.substr(0, 40), " ", right.substr(0, 40), "' names '",
                  part.substr(0, 80), "', which is not in the vocabulary");
  regex_ = compile_regex(kGpt2Pattern);
  digits_ = compile_regex(R"(\p{N})");

  auto symbol = [&](const std::string& text) {
    auto [it, inserted] = symbol_index_.emplace(text, static_cast<int32_t>(symbol_id_.size()));
    if (inserted) symbol_id_.push_back(-1);
    return it->second;
  };
  for (const auto& [token, id] : vocab) {
    symbol_id_.at(symbol(token)) = id;
    id_token_[id] = token;
  }
  const auto& alphabet = byte_level_alphabet();
  for (int byte = 0; byte < 256; ++byte) byte_symbol_[byte] = symbol(alphabet[byte]);
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const uint64_t key = pair_key(symbol(left), symbol(right));
    // A repeated merge takes its last rank, as HF's dict(zip(merges, range(n))) does.
    merges_.insert_or_assign(key, std::make_pair(static_cast<int32_t>(rank), symbol(left + right)));
  }
  if (auto found = vocab.find("<unk>"); found != vocab.end()) unk_id_ = found->second;
}

ByteLevelBpe::~ByteLevelBpe() = default;

int32_t ByteLevelBpe::token_id(const std::string& token) const {
  auto found = symbol_index_.find(token);
  return found == symbol_index_.end() ? -1 : symbol_id_[found->second];
}

std::string ByteLevelBpe::description() const {
  return str_cat("byte-level BPE (", source_, ", ", id_token_.size(), " tokens, ", merges_.size(), " merges)");
}

void ByteLevelBpe::scan(const Regex& regex, std::string_view text, const std::function<void(std::string_view)>& on_gap,
                        const std::function<void(std::string_view)>& on_match) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const MatchData match(regex.code);
  size_t offset = 0;
  while (offset < text.size()) {
    const int matched = pcre2_match(regex.code, subject, text.size(), offset, 0, match.data, nullptr);
    const PCRE2_SIZE* range = pcre2_get_ovector_pointer(match.data);
    if (matched < 0 || range[1] <= offset) {  // no further (non-empty) match: the rest is a gap
      on_gap(text.substr(offset));
      return;
    }
    if (range[0] > offset) on_gap(text.substr(offset, range[0] - offset));
    on_match(text.substr(range[0], range[1] - range[0]));
    offset = range[1];
  }
}

void ByteLevelBpe::pre_tokenize(std::string_view text, const std::function<void(std::string_view)>& emit) const {
  // The GPT-2 pattern matches every character, so gaps do not occur; one would be kept whole.
  scan(*regex_, text, emit, emit);
}

void ByteLevelBpe::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (options_.ignore_merges) {
    std::string mapped;
    for (unsigned char byte : word) mapped += byte_level_alphabet()[byte];
    if (int32_t id = token_id(mapped); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  for (unsigned char byte : word) symbols.push_back(byte_symbol_[byte]);
  // Merge the lowest-ranked adjacent pair everywhere it occurs, until no pair
  // has a rank (HF's bpe()). Words are short and cached, so a scan per merge is cheap.
  while (symbols.size() > 1) {
    int32_t best_rank = std::numeric_limits<int32_t>::max();
    uint64_t best_key = 0;
    int32_t merged = -1;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      auto found = merges_.find(pair_key(symbols[i], symbols[i + 1]));
      if (found != merges_.end() && found->second.first < best_rank) {
        best_rank = found->second.first;
        best_key = found->first;
        merged = found->second.second;
      }
    }
    if (merged < 0) break;
    size_t write = 0;
    for (size_t read = 0; read < symbols.size(); ++read) {
      if (read + 1 < symbols.size() && pair_key(symbols[read], symbols[read + 1]) == best_key) {
        symbols[write++] = merged;
        ++read;
      } else {
        symbols[write++] = symbols[read];
      }
    }
    symbols.resize(write);
  }
  for (int32_t symbol : symbols) {
    const int32_t id = symbol_id_[symbol];
    PBLLM_CHECK(id >= 0 || unk_id_ >= 0, source_, ": a BPE merge result is missing from the vocabulary and there is "
                                        "no <unk> token");
    out.push_back(id >= 0 ? id : unk_id_);
  }
}

void ByteLevelBpe::encode_stretch(std::string_view text, std::vector<int32_t>& out, WordCache& cache) const {
  auto encode_cached = [&](std::string_view word) {
    auto [it, inserted] = cache.try_emplace(std::string(word));
    if (inserted) encode_word(word, it->second);
    out.insert(out.end(), it->second.begin(), it->second.end());
  };
  if (!options_.split_digits) {
    pre_tokenize(text, encode_cached);
    return;
  }
  // Digits(individual_digits=true) first: each numeric character (\p{N}, as
  // Rust's char::is_numeric: '½' and '²' too) alone, the runs between them
  // through the regex.
  scan(*digits_, text, [&](std::string_view run) { pre_tokenize(run, encode_cached); }, encode_cached);
}

std::string ByteLevelBpe::decode(const std::vector<int32_t>& ids) const {
  static const std::unordered_map<std::string, unsigned char> byte_of = [] {
    std::unordered_map<std::string, unsigned char> table;
    for (int byte = 0; byte < 256; ++byte) table[byte_level_alphabet()[byte]] = static_cast<unsigned char>(byte);
    return table;
  }();
  std::string text;
  for (int32_t id : ids) {
    auto found = id_token_.find(id);
    PBLLM_CHECK(found != id_token_.end(), "decode: id ", id, " is not in the vocabulary of ", source_);
    const std::string& token = found->second;
    for (size_t i = 0; i < token.size();) {
      const unsigned char lead = static_cast<unsigned char>(token[i]);
      const size_t length = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
      auto byte = byte_of.find(token.substr(i, length));
      text += byte != byte_of.end() ? std::string(1, static_cast<char>(byte->second)) : token.substr(i, length);
      i += length;
    }
  }
  return text;
}

std::unique_ptr<ByteLevelBpe> ByteLevelBpe::from_vocab_and_merges(const std::filesystem::path& vocab_json,
                                                                  const std::filesystem::path& merges_txt) {
  const nlohmann::json vocab_file = io::read_json_file(vocab_json);
  PBLLM_CHECK(vocab_file.is_object(), vocab_json.string(), ": not a {token: id} object");
  std::unordered_map<std::string, int32_t> vocab;
  for (const auto& [token, id] : vocab_file.items()) {
    vocab[token] = io::json_integer<int32_t>(id, str_cat(vocab_json.string(), ": the id of '", token, "'"));
  }
  std::ifstream in(merges_txt);
  PBLLM_CHECK(in.good(), merges_txt.string(), ": cannot open");
  std::vector<std::pair<std::string, std::string>> merges;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("#version", 0) == 0 || line.empty()) continue;
    const size_t space = line.find(' ');
    PBLLM_CHECK(space != std::string::npos && space > 0 && space + 1 < line.size(), merges_txt.string(), ": line ",
                merges.size() + 1, " is not 'left right': ", line.substr(0, 80));
    merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  return std::make_unique<ByteLevelBpe>(vocab, merges, ByteLevelBpeOptions{},
                                        vocab_json.string() + " + " + merges_txt.filename().string());
}

namespace {

// Reads the pre-tokenizer: ByteLevel alone, or a Sequence of Digits and ByteLevel.
ByteLevelBpeOptions pre_tokenizer_options(const nlohmann::json& pre, const std::string& source) {
  ByteLevelBpeOptions options;
  std::vector<nlohmann::json> steps;
  if (pre.value("type", "") == "Sequence") {
    for (const auto& step : pre["pretokenizers"]) steps.push_back(step);
  } else {
    steps.push_back(pre);
  }
  bool byte_level = false;
  for (const auto& step : steps) {
    const std::string type = step.value("type", "");
    if (type == "ByteLevel") {
      PBLLM_CHECK(!step.value("add_prefix_space", false), source, ": ByteLevel add_prefix_space is not supported");
      PBLLM_CHECK(step.value("use_regex", true), source, ": ByteLevel without the GPT-2 regex is not supported");
      byte_level = true;
    } else if (type == "Digits") {
      PBLLM_CHECK(step.value("individual_digits", false), source, ": Digits without individual_digits is not supported");
      PBLLM_CHECK(!byte_level, source, ": Digits after ByteLevel is not supported");
      options.split_digits = true;
    } else {
      throw Error(str_cat(source, ": pre-tokenizer '", type, "' is not supported (ByteLevel, Digits)"));
    }
  }
  PBLLM_CHECK(byte_level, source, ": no ByteLevel pre-tokenizer; only byte-level BPE tokenizer.json files are read");
  return options;
}

}  // namespace

std::unique_ptr<ByteLevelBpe> ByteLevelBpe::from_tokenizer_json(const std::filesystem::path& tokenizer_json) {
  const std::string source = tokenizer_json.string();
  const nlohmann::json json = io::read_json_file(tokenizer_json);
  return io::reading_json(tokenizer_json, [&] {
    const nlohmann::json& model = json.at("model");
    PBLLM_CHECK(model.value("type", "") == "BPE", source, ": the model is not of type BPE");
    const nlohmann::json normalizer = json.value("normalizer", nlohmann::json());
    const bool no_normalizer =
        normalizer.is_null() || (normalizer.value("type", "") == "Sequence" &&
                                 normalizer.value("normalizers", nlohmann::json::array()).empty());
    PBLLM_CHECK(no_normalizer, source, ": normalizers are not supported for byte-level BPE");
    PBLLM_CHECK(json.contains("pre_tokenizer") && json.at("pre_tokenizer").is_object(), source, ": no pre_tokenizer");
    ByteLevelBpeOptions options = pre_tokenizer_options(json.at("pre_tokenizer"), source);
    options.ignore_merges = model.value("ignore_merges", false);
    PBLLM_CHECK(model.at("vocab").is_object(), source, ": model.vocab is not a {token: id} object");
    std::unordered_map<std::string, int32_t> vocab;
    for (const auto& [token, id] : model.at("vocab").items())
      vocab[token] = io::json_integer<int32_t>(id, str_cat(source, ": the id of '", token.substr(0, 40), "'"));
    std::vector<std::pair<std::string, std::string>> merges;
    for (const auto& merge : model.at("merges")) {
      if (merge.is_array()) {  // newer files: ["left", "right"]
        PBLLM_CHECK(merge.size() == 2, source, ": merge ", merge.dump(), " is not [left, right]");
        merges.emplace_back(merge.at(0).get<std::string>(), merge.at(1).get<std::string>());
        continue;
      }
      const std::string text = merge.get<std::string>();
      const size_t space = text.find(' ');
      PBLLM_CHECK(space != std::string::npos, source, ": merge '", text, "' is not 'left right'");
      merges.emplace_back(text.substr(0, space), text.substr(space + 1));
    }
    return std::make_unique<ByteLevelBpe>(vocab, merges, options, source);
  });
}

}  // namespace pbllm::tokenizer
