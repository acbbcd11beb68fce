#include "pbllm/eval/perplexity.h"

#include <ATen/ops/from_blob.h>
#include <ATen/ops/tensor.h>
#include <c10/core/GradMode.h>

#include <chrono>
#include <cmath>

#include "pbllm/core/check.h"
#include "pbllm/core/interrupt.h"
#include "pbllm/report/progress.h"

namespace pbllm::eval {
namespace {

at::Tensor as_batch(const std::vector<int64_t>& ids) {
  return at::tensor(ids, at::TensorOptions().dtype(at::kLong)).unsqueeze(0);
}

}  // namespace

std::vector<NllSum> row_nll(const model::DecoderModel& model, const at::Tensor& ids) {
  PBLLM_CHECK(ids.dim() == 2 && ids.size(1) >= 2, "need [batch, >= 2 tokens] to score, got ", ids.sizes());
  c10::NoGradGuard no_grad;
  const int64_t scored = ids.size(1) - 1;
  const at::Tensor hidden = model.hidden_states(ids).narrow(1, 0, scored);
  const at::Tensor sums = model.target_nll(hidden, ids.narrow(1, 1, scored)).to(at::kDouble).sum(1).cpu();
  std::vector<NllSum> rows;
  for (int64_t row = 0; row < ids.size(0); ++row) {
    const double nll = sums[row].item<double>();
    PBLLM_CHECK(std::isfinite(nll), "the model produced a non-finite loss (NaN or Inf weights?)");
    rows.push_back({nll, scored});
  }
  return rows;
}

NllSum sequence_nll(const model::DecoderModel& model, const std::vector<int64_t>& ids) {
  PBLLM_CHECK(ids.size() >= 2, "need at least 2 tokens to score, got ", ids.size());
  return row_nll(model, as_batch(ids))[0];
}

PerplexityResult evaluate_perplexity(const model::DecoderModel& model, const std::vector<int32_t>& ids,
                                     int64_t seqlen, int64_t max_windows, const std::string& label) {
  PBLLM_CHECK(seqlen >= 2, "--seqlen must be at least 2, got ", seqlen);
  PBLLM_CHECK(seqlen <= model.config().max_position_embeddings, "--seqlen ", seqlen, " exceeds the model's ",
              model.config().max_position_embeddings, " positions");
  PerplexityResult result;
  result.tokens = static_cast<int64_t>(ids.size());
  result.available_windows = result.tokens / seqlen;
  result.windows = max_windows > 0 ? std::min(max_windows, result.available_windows) : result.available_windows;
  PBLLM_CHECK(result.windows > 0, label, ": ", result.tokens, " tokens make no window of ", seqlen);
  const auto start = std::chrono::steady_clock::now();
  c10::NoGradGuard no_grad;
  report::Progress progress(label, result.windows, "windows");
  // Short windows go through the model in batches of about kBatchTokens
  // tokens (the logits are never whole: target_nll reduces them chunk by
  // chunk). Batching 2048-token windows by 4 was 5% slower on SmolLM2 and
  // took 1.5 GB more.
  constexpr int64_t kBatchTokens = 2048;
  const int64_t batch = std::max<int64_t>(1, kBatchTokens / seqlen);
  const at::Tensor all_ids = at::tensor(std::vector<int64_t>(ids.begin(), ids.begin() + result.windows * seqlen),
                                        at::TensorOptions().dtype(at::kLong))
                                 .view({result.windows, seqlen});
  double sum = 0, sum_squares = 0;
  for (int64_t first = 0; first < result.windows; first += batch) {
    check_interrupted();
    const int64_t count = std::min(batch, result.windows - first);
    for (const NllSum& window : row_nll(model, all_ids.narrow(0, first, count))) {
      sum += window.mean();
      sum_squares += window.mean() * window.mean();
    }
    progress.update(first + count, str_cat("ppl ", std::exp(sum / (first + count))));
  }
  const double n = static_cast<double>(result.windows);
  const double mean = sum / n;
  const double variance = n > 1 ? std::max(0.0, (sum_squares - n * mean * mean) / (n - 1)) : 0.0;
  result.perplexity = std::exp(mean);
  result.stderr_perplexity = result.perplexity * std::sqrt(variance / n);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

std::vector<int64_t> greedy_continue(const model::DecoderModel& model, std::vector<int64_t> prompt, int64_t count) {
  PBLLM_CHECK(!prompt.empty(), "greedy decoding needs a prompt of at least one token");
  PBLLM_CHECK(static_cast<int64_t>(prompt.size()) + count <= model.config().max_position_embeddings,
              "a prompt of ", prompt.size(), " tokens and ", count, " more exceed the model's ",
              model.config().max_position_embeddings, " positions");
  c10::NoGradGuard no_grad;
  model::KvCache cache;
  at::Tensor next = as_batch(prompt);  // the prompt once, then each new token alone
  for (int64_t step = 0; step < count; ++step) {
    check_interrupted();
    const at::Tensor logits = model.forward(next, &cache)[0];
    prompt.push_back(logits[logits.size(0) - 1].argmax().item<int64_t>());
    next = as_batch({prompt.back()});
  }
  return prompt;
}

}  // namespace pbllm::eval
