// Perplexity of a model on named datasets, as pbllm-eval and
// pbllm-quantize --eval report it.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "pbllm/eval/perplexity.h"
#include "pbllm/model/decoder.h"
#include "pbllm/tokenizer/tokenizer.h"

namespace pbllm::eval {

struct DatasetResult {
  std::string dataset;
  bool skipped = false;
  std::string skip_reason;  // e.g. the missing file
  std::string data_sha256;  // of the evaluation file
  PerplexityResult result;
};

struct EvaluationOptions {
  std::vector<std::string> datasets = {"wikitext2", "ptb", "c4"};
  std::filesystem::path data_dir;
  int64_t seqlen = 0;  // 0: min(2048, max_position_embeddings)
  int64_t max_windows = 0;
};

// The reference's seqlen for a model: 2048, or fewer positions if it has them.
int64_t default_seqlen(const model::ModelConfig& config);

// Evaluates each dataset; one whose files are missing is skipped with the reason.
std::vector<DatasetResult> evaluate_datasets(const model::DecoderModel& model, const tokenizer::Tokenizer& tokenizer,
                                             const EvaluationOptions& options);

// Throws when every dataset was skipped: a run that measured nothing must not exit 0.
void require_some_evaluated(const std::vector<DatasetResult>& results);

// The results as a table (dataset, perplexity ± stderr, tokens, windows, seconds).
std::string format_results(const std::vector<DatasetResult>& results, int64_t seqlen);
// {"<dataset>": {"perplexity", "stderr", "tokens", "windows", "seconds"}, ...}; skipped ones {"skipped": reason}.
nlohmann::json results_json(const std::vector<DatasetResult>& results);

}  // namespace pbllm::eval
