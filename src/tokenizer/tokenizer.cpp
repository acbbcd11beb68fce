#include "pbllm/tokenizer/tokenizer.h"

#include <algorithm>

#include "pbllm/core/check.h"
#include "pbllm/io/checkpoint.h"
#include "pbllm/tokenizer/byte_level_bpe.h"
#include "pbllm/tokenizer/sentencepiece.h"

namespace pbllm::tokenizer {
namespace fs = std::filesystem;

void Tokenizer::set_special_tokens(std::vector<SpecialToken> tokens) {
  for (const SpecialToken& token : tokens)  // an empty one would match everywhere, forever
    PBLLM_CHECK(!token.text.empty(), "special token ", token.id, " has an empty text");
  std::stable_sort(tokens.begin(), tokens.end(),
                   [](const SpecialToken& a, const SpecialToken& b) { return a.text.size() > b.text.size(); });
  tokens.erase(std::unique(tokens.begin(), tokens.end(),
                           [](const SpecialToken& a, const SpecialToken& b) { return a.text == b.text; }),
               tokens.end());
  special_tokens_ = std::move(tokens);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  if (bos_id_) ids.push_back(*bos_id_);
  const std::vector<int32_t> body = encode_without_bos(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

std::vector<int32_t> Tokenizer::encode_without_bos(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3);
  WordCache cache;
  // next[i]: where special token i occurs next at or after `position`; each
  // is searched again only once passed, so the scan stays linear.
  std::vector<size_t> next;
  for (const SpecialToken& token : special_tokens_) next.push_back(text.find(token.text));
  size_t position = 0;
  while (position < text.size()) {
    size_t found_at = std::string_view::npos;
    size_t which = 0;
    for (size_t i = 0; i < special_tokens_.size(); ++i) {
      if (next[i] != std::string_view::npos && next[i] < position) next[i] = text.find(special_tokens_[i].text, position);
      if (next[i] < found_at) {  // ties keep the earlier (longer) token
        found_at = next[i];
        which = i;
      }
    }
    const size_t stretch_end = std::min(found_at, text.size());
    if (stretch_end > position) encode_stretch(text.substr(position, stretch_end - position), ids, cache);
    if (found_at == std::string_view::npos) break;
    ids.push_back(special_tokens_[which].id);
    position = found_at + special_tokens_[which].text.size();
  }
  return ids;
}

namespace {

// A special-token entry of tokenizer_config.json / special_tokens_map.json: a
// string or {"content": ...}.
std::string token_text(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content")) return value.at("content").get<std::string>();
  return "";
}

nlohmann::json read_optional_json(const fs::path& path) {
  return fs::exists(path) ? io::read_json_file(path) : nlohmann::json::object();
}

// The special tokens transformers' slow tokenizers match in raw text: the
// bos / eos / unk / pad (and other) tokens the config files declare, plus
// added_tokens_decoder entries, plus the tokenizer class's `defaults`.
void configure_special_tokens(Tokenizer& tokenizer, const fs::path& dir, const std::vector<std::string>& defaults,
                              bool default_add_bos, const std::string& default_bos) {
  nlohmann::json config = read_optional_json(dir / "tokenizer_config.json");
  const nlohmann::json map = read_optional_json(dir / "special_tokens_map.json");
  for (const auto& [key, value] : map.items())
    if (!config.contains(key)) config[key] = value;
  std::vector<std::string> texts;
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"})
    if (config.contains(key) && !token_text(config[key]).empty()) texts.push_back(token_text(config[key]));
  if (config.contains("additional_special_tokens"))
    for (const auto& value : config["additional_special_tokens"]) texts.push_back(token_text(value));
  if (config.contains("added_tokens_decoder"))
    for (const auto& [id, value] : config["added_tokens_decoder"].items()) texts.push_back(token_text(value));
  texts.insert(texts.end(), defaults.begin(), defaults.end());  // the tokenizer class's own defaults
  std::vector<SpecialToken> tokens;
  for (const std::string& text : texts)
    if (int32_t id = tokenizer.token_id(text); id >= 0 && !text.empty()) tokens.push_back({text, id});
  tokenizer.set_special_tokens(std::move(tokens));

  const bool add_bos = config.value("add_bos_token", default_add_bos);
  const std::string bos = config.contains("bos_token") ? token_text(config["bos_token"]) : default_bos;
  if (!add_bos) return;
  const int32_t bos_id = tokenizer.token_id(bos);
  PBLLM_CHECK(bos_id >= 0, (dir / "tokenizer_config.json").string(), ": add_bos_token is set but the BOS token '", bos,
              "' is not in the vocabulary");
  tokenizer.set_bos_id(bos_id);
}

// tokenizer.json: added tokens are matched in the raw text; BOS is what a
// TemplateProcessing post-processor puts before the sequence.
void configure_from_tokenizer_json(Tokenizer& tokenizer, const fs::path& path) {
  const nlohmann::json json = io::read_json_file(path);
  io::reading_json(path, [&] {
    std::vector<SpecialToken> tokens;
    if (json.contains("added_tokens"))
      for (const auto& added : json.at("added_tokens")) {
        const auto id = io::json_integer<int32_t>(added.at("id"), str_cat(path.string(), ": an added token's id"));
        const auto content = added.at("content").get<std::string>();
        PBLLM_CHECK(!content.empty(), path.string(), ": added token ", id, " has an empty \"content\"");
        tokens.push_back({content, id});
      }
    tokenizer.set_special_tokens(std::move(tokens));
    const nlohmann::json post = json.value("post_processor", nlohmann::json());
    if (post.is_object() && post.value("type", "") == "TemplateProcessing" && !post.at("single").empty()) {
      const nlohmann::json& first = post.at("single").at(0);
      if (first.contains("SpecialToken")) {
        const std::string name = first.at("SpecialToken").at("id").get<std::string>();
        tokenizer.set_bos_id(io::json_integer<int32_t>(post.at("special_tokens").at(name).at("ids").at(0),
                                                       str_cat(path.string(), ": the BOS id")));
      }
    }
  });
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_directory(const fs::path& dir) {
  if (fs::exists(dir / "tokenizer.model")) {
    // LlamaTokenizer (slow, legacy): <unk>, <s>, </s> special; <s> prepended.
    auto tokenizer = SentencePieceBpe::from_file(dir / "tokenizer.model");
    const auto& pieces = tokenizer->model().pieces;
    auto piece_text = [&](int32_t id) { return id >= 0 && id < (int32_t)pieces.size() ? pieces[id].text : ""; };
    const SentencePieceModel& model = tokenizer->model();
    configure_special_tokens(*tokenizer, dir, {piece_text(model.unk_id), piece_text(model.bos_id), piece_text(model.eos_id)},
                             true, piece_text(model.bos_id));
    return tokenizer;
  }
  if (fs::exists(dir / "tokenizer.json")) {
    auto tokenizer = ByteLevelBpe::from_tokenizer_json(dir / "tokenizer.json");
    configure_from_tokenizer_json(*tokenizer, dir / "tokenizer.json");
    return tokenizer;
  }
  if (fs::exists(dir / "vocab.json") && fs::exists(dir / "merges.txt")) {
    // GPT2Tokenizer (slow): <|endoftext|> by default; OPT's config declares
    // </s>, <s>, <pad>, <unk> and add_bos_token (</s> prepended).
    auto tokenizer = ByteLevelBpe::from_vocab_and_merges(dir / "vocab.json", dir / "merges.txt");
    configure_special_tokens(*tokenizer, dir, {"<|endoftext|>"}, false, "<|endoftext|>");
    return tokenizer;
  }
  throw Error(str_cat(dir.string(), ": no tokenizer (looked for tokenizer.model, tokenizer.json, vocab.json + merges.txt)"));
}

}  // namespace pbllm::tokenizer
