#include "pbllm/eval/evaluate.h"

#include <cstdio>

#include "pbllm/core/check.h"
#include "pbllm/data/datasets.h"
#include "pbllm/io/sha256.h"
#include "pbllm/report/logging.h"

namespace pbllm::eval {

int64_t default_seqlen(const model::ModelConfig& config) {
  return std::min<int64_t>(2048, config.max_position_embeddings);
}

std::vector<DatasetResult> evaluate_datasets(const model::DecoderModel& model, const tokenizer::Tokenizer& tokenizer,
                                             const EvaluationOptions& options) {
  const int64_t seqlen = options.seqlen > 0 ? options.seqlen : default_seqlen(model.config());
  std::vector<DatasetResult> results;
  for (const std::string& name : options.datasets) {
    DatasetResult entry;
    entry.dataset = name;
    const data::Dataset dataset = data::Dataset::parse(name);
    std::filesystem::path file;
    try {
      file = data::dataset_file(dataset, data::Split::evaluation, options.data_dir);
    } catch (const Error& error) {
      entry.skipped = true;
      entry.skip_reason = error.what();
      log::warn(str_cat("skipping ", name, ": ", error.what()));
      results.push_back(std::move(entry));
      continue;
    }
    entry.data_sha256 = io::sha256_file(file);
    const std::vector<int32_t> ids = data::evaluation_ids(dataset, tokenizer, options.data_dir, seqlen);
    log::info(str_cat(name, ": ", ids.size(), " tokens from ", file.string()));
    entry.result = evaluate_perplexity(model, ids, seqlen, options.max_windows, name);
    results.push_back(std::move(entry));
  }
  return results;
}

void require_some_evaluated(const std::vector<DatasetResult>& results) {
  std::string reasons;
  for (const DatasetResult& entry : results) {
    if (!entry.skipped) return;
    reasons += str_cat(reasons.empty() ? "" : "; ", entry.skip_reason);
  }
  throw Error(str_cat("no dataset could be evaluated (", reasons, ")"));
}

std::string format_results(const std::vector<DatasetResult>& results, int64_t seqlen) {
  std::string table = str_cat("dataset      perplexity            tokens    windows (seqlen ", seqlen, ")   seconds\n");
  char line[256];
  for (const DatasetResult& entry : results) {
    if (entry.skipped) {
      table += str_cat(entry.dataset, std::string(entry.dataset.size() < 13 ? 13 - entry.dataset.size() : 1, ' '), "skipped: ",
                       entry.skip_reason, "\n");
      continue;
    }
    const PerplexityResult& r = entry.result;
    const std::string windows = r.windows < r.available_windows
                                    ? str_cat(r.windows, " of ", r.available_windows, " (--max-windows)")
                                    : str_cat(r.windows);
    std::snprintf(line, sizeof line, "%-12s %10.4f ± %-8.4f %9lld    %-28s %8.1f\n", entry.dataset.c_str(),
                  r.perplexity, r.stderr_perplexity, static_cast<long long>(r.tokens), windows.c_str(), r.seconds);
    table += line;
  }
  return table;
}

nlohmann::json results_json(const std::vector<DatasetResult>& results) {
  nlohmann::json json = nlohmann::json::object();
  for (const DatasetResult& entry : results) {
    if (entry.skipped) {
      json[entry.dataset] = {{"skipped", entry.skip_reason}};
      continue;
    }
    const PerplexityResult& r = entry.result;
    json[entry.dataset] = {{"perplexity", r.perplexity}, {"stderr", r.stderr_perplexity}, {"tokens", r.tokens},
                           {"windows", r.windows},       {"available_windows", r.available_windows},
                           {"seconds", r.seconds},       {"sha256", entry.data_sha256}};
  }
  return json;
}

}  // namespace pbllm::eval
