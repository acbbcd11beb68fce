// pbllm-inspect MODEL: the model's summary; optionally the perplexity of token
// id sequences from a JSON file, and a greedy continuation.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "pbllm/core/check.h"
#include "pbllm/eval/perplexity.h"
#include "pbllm/io/checkpoint.h"
#include "pbllm/model/decoder.h"
#include "pbllm/model/device.h"
#include "pbllm/pack/packed_checkpoint.h"
#include "tool_main.h"

namespace {

using pbllm::str_cat;

// A JSON list of id lists, or an object whose "stories" each have "ids"
// (the format of data/stories260K/reference_ppl_tinystories_sample.json).
std::vector<std::vector<int64_t>> read_id_sequences(const std::string& path) {
  const nlohmann::json json = pbllm::io::read_json_file(path);
  const nlohmann::json& list = json.is_object() && json.contains("stories") ? json["stories"] : json;
  PBLLM_CHECK(list.is_array(), path, ": expected a list of id lists or {\"stories\": [{\"ids\": [...]}, ...]}");
  std::vector<std::vector<int64_t>> sequences;
  for (const auto& item : list) {
    const nlohmann::json& ids = item.is_object() && item.contains("ids") ? item["ids"] : item;
    try {
      sequences.push_back(ids.get<std::vector<int64_t>>());
    } catch (const nlohmann::json::exception&) {
      throw pbllm::Error(str_cat(path, ": sequence ", sequences.size(), " is not a list of integer ids"));
    }
  }
  return sequences;
}

void print_summary(const pbllm::io::Checkpoint& checkpoint, const pbllm::model::DecoderModel& model) {
  const auto& c = model.config();
  std::printf("model        %s (%s)\n", checkpoint.dir().c_str(), checkpoint.weights_file().c_str());
  std::printf("type         %s, %lld layers, hidden %lld, ffn %lld, heads %lld (kv %lld, dim %lld)\n",
              c.model_type.c_str(), (long long)c.num_layers, (long long)c.hidden_size, (long long)c.intermediate_size,
              (long long)c.num_heads, (long long)c.num_kv_heads, (long long)c.head_dim);
  std::printf("vocab        %lld, context %lld, dtype %s, tied embeddings %s\n", (long long)c.vocab_size,
              (long long)c.max_position_embeddings, c.torch_dtype.c_str(), c.tie_word_embeddings ? "yes" : "no");
  std::printf("parameters   %lld\n", (long long)model.parameter_count());
  std::printf("linears      ");
  for (const std::string& name : model.linear_names()) {
    const auto sizes = model.weight(model.linear_weight_name(0, name)).sizes();
    std::printf("%s [%lld x %lld]  ", name.c_str(), (long long)sizes[0], (long long)sizes[1]);
  }
  std::printf("\n");
  // Bits measured from the files: for a packed checkpoint, the packed Linears' share and its split.
  const auto size = pbllm::pack::measure_model_size(checkpoint, model.packed_linears(), model.parameter_count());
  std::printf("%s", pbllm::pack::format_model_size(size, nullptr).c_str());
}

void print_perplexity(const pbllm::model::DecoderModel& model, const std::string& path) {
  pbllm::eval::NllSum total;
  const auto sequences = read_id_sequences(path);
  for (size_t i = 0; i < sequences.size(); ++i) {
    const pbllm::eval::NllSum one = pbllm::eval::sequence_nll(model, sequences[i]);
    pbllm::log::info(str_cat("sequence ", i + 1, "/", sequences.size(), ": ", one.tokens, " tokens, nll ", one.nll));
    total.nll += one.nll;
    total.tokens += one.tokens;
  }
  std::printf("perplexity   %.4f over %lld scored tokens in %zu sequences (%s)\n", std::exp(total.mean()),
              (long long)total.tokens, sequences.size(), path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Summarise a Hugging Face OPT / LLaMA checkpoint; score token ids", "pbllm-inspect"};
  std::string model_arg, ids_path;
  pbllm::tools::DeviceFlags device;
  int generate = 0;
  pbllm::tools::CommonFlags common;
  app.add_option("model", model_arg, "checkpoint directory or ORG/NAME in the Hugging Face cache")->required();
  app.add_option("--score", ids_path, "JSON file of token id sequences: print their perplexity")
      ->check(CLI::ExistingFile);
  app.add_option("--generate", generate, "greedy-decode this many tokens after BOS and print the ids")
      ->check(CLI::Range(0, 4096));
  device.add_to(app);
  common.add_to(app);
  pbllm::tools::run_tool(app, argc, argv, [&] {
    common.apply();
    const auto checkpoint = pbllm::io::Checkpoint::open(model_arg);
    const auto model = device.load(checkpoint);
    print_summary(checkpoint, *model);
    if (!ids_path.empty()) print_perplexity(*model, ids_path);
    if (generate > 0) {
      const int64_t bos = checkpoint.config().value("bos_token_id", 1);
      const auto start = std::chrono::steady_clock::now();
      const auto ids = pbllm::eval::greedy_continue(*model, {bos}, generate);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("greedy       ");
      for (size_t i = 1; i < ids.size(); ++i) std::printf("%lld ", (long long)ids[i]);
      std::printf("\ngenerated    %d tokens in %.2f s = %.1f tokens/s (KV cache%s), peak RSS %.0f MiB\n", generate,
                  seconds, generate / seconds, model->packed_linears().empty() ? "" : ", packed GEMV",
                  pbllm::model::peak_memory_bytes(model->device()) / 1048576.0);
    }
  });
}
