// pbllm-eval MODEL: perplexity per dataset, the reference's convention.
#include <torch/version.h>

#include <cstdio>

#include "pbllm/core/check.h"
#include "pbllm/data/datasets.h"
#include "pbllm/eval/evaluate.h"
#include "pbllm/io/atomic_file.h"
#include "pbllm/io/checkpoint.h"
#include "pbllm/io/output_folder.h"
#include "pbllm/model/decoder.h"
#include "pbllm/model/device.h"
#include "tool_main.h"

int main(int argc, char** argv) {
  CLI::App app{"Perplexity of a Hugging Face OPT / LLaMA checkpoint on wikitext2, ptb, c4 or a text file",
               "pbllm-eval"};
  std::string model_arg, datasets = "wikitext2,ptb,c4", json_path, data_dir;
  pbllm::tools::DeviceFlags device;
  pbllm::eval::EvaluationOptions options;
  pbllm::tools::CommonFlags common;
  app.add_option("model", model_arg, "checkpoint directory or ORG/NAME in the Hugging Face cache")->required();
  app.add_option("--datasets", datasets, "comma-separated: wikitext2, ptb, c4, text:PATH");
  app.add_option("--seqlen", options.seqlen, "window length (default: min(2048, the model's context))")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  app.add_option("--data-dir,--data_dir", data_dir, "dataset folder (default: $PBLLM_DATA, else the bundled data/)");
  device.add_to(app);
  app.add_option("--max-windows,--max_windows", options.max_windows, "evaluate only the first N windows")
      ->check(pbllm::tools::count_range());
  app.add_option("--json", json_path, "also write the results as JSON to this file");
  common.add_to(app);
  pbllm::tools::run_tool(app, argc, argv, [&] {
    common.apply();
    options.datasets = CLI::detail::split(datasets, ',');
    for (const std::string& name : options.datasets) pbllm::data::Dataset::parse(name);  // fail before loading
    options.data_dir = data_dir.empty() ? pbllm::data::default_data_dir() : std::filesystem::path(data_dir);
    const auto checkpoint = pbllm::io::Checkpoint::open(model_arg);
    if (!json_path.empty()) pbllm::io::check_output_file(json_path, checkpoint.dir(), "--json");
    const auto model = device.load(checkpoint);
    const auto tokenizer = pbllm::tokenizer::Tokenizer::from_directory(checkpoint.dir());
    const int64_t seqlen = options.seqlen > 0 ? options.seqlen : pbllm::eval::default_seqlen(model->config());
    pbllm::log::info(pbllm::str_cat("model ", checkpoint.dir().string(), ": ", model->config().model_type, ", ",
                                    model->num_layers(), " layers; tokenizer: ", tokenizer->description()));
    const auto results = pbllm::eval::evaluate_datasets(*model, *tokenizer, options);
    std::printf("%s", pbllm::eval::format_results(results, seqlen).c_str());
    pbllm::eval::require_some_evaluated(results);
    if (json_path.empty()) return;
    nlohmann::json json = pbllm::eval::results_json(results);
    json["meta"] = {{"model", checkpoint.dir().string()},
                    {"seqlen", seqlen},
                    {"device", device.device},
                    {"compute_dtype", pbllm::model::compute_dtype_name(model->compute_dtype())},
                    {"max_windows", options.max_windows},
                    {"tokenizer", tokenizer->description()},
                    {"versions", {{"pbllm", PBLLM_VERSION}, {"torch", TORCH_VERSION}}}};
    pbllm::io::write_file_atomically(json_path, [&](std::ostream& out) { out << json.dump(2) << "\n"; });
  });
}
