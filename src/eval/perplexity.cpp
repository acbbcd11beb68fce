#include "pbllm/eval/perplexity.h"

#include <ATen/ops/from_blob.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/tensor.h>
#include <c10/core/GradMode.h>

#include "pbllm/core/check.h"

namespace pbllm::eval {
namespace {

at::Tensor as_batch(const std::vector<int64_t>& ids) {
  return at::tensor(ids, at::TensorOptions().dtype(at::kLong)).unsqueeze(0);
}

}  // namespace

NllSum sequence_nll(const model::DecoderModel& model, const std::vector<int64_t>& ids) {
  PBLLM_CHECK(ids.size() >= 2, "need at least 2 tokens to score, got ", ids.size());
  c10::NoGradGuard no_grad;
  const at::Tensor logits = model.forward(as_batch(ids))[0];
  const int64_t scored = static_cast<int64_t>(ids.size()) - 1;
  const at::Tensor log_probs = at::log_softmax(logits.narrow(0, 0, scored), -1);
  const at::Tensor targets = as_batch(ids)[0].narrow(0, 1, scored).to(log_probs.device()).unsqueeze(1);
  const double nll = -log_probs.gather(1, targets).to(at::kDouble).sum().item<double>();
  PBLLM_CHECK(std::isfinite(nll), "the model produced a non-finite loss (NaN or Inf weights?)");
  return {nll, scored};
}

std::vector<int64_t> greedy_continue(const model::DecoderModel& model, std::vector<int64_t> prompt, int64_t count) {
  PBLLM_CHECK(!prompt.empty(), "greedy decoding needs a prompt of at least one token");
  c10::NoGradGuard no_grad;
  for (int64_t step = 0; step < count; ++step) {
    const at::Tensor logits = model.forward(as_batch(prompt))[0];
    prompt.push_back(logits[logits.size(0) - 1].argmax().item<int64_t>());
  }
  return prompt;
}

}  // namespace pbllm::eval
