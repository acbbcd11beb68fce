// PB-LLM's QAT loop as the reference runs it through Hugging Face's Trainer
// (qat/run_qat.py): AdamW (betas 0.9 / 0.999, eps 1e-8, no weight decay), a
// cosine schedule after a linear warmup over 5% of the steps, gradients of
// `batch` windows accumulated `accumulation` times, clipped to a global norm
// of 1 (the Trainer's max_grad_norm), the causal-LM loss (mean NLL of each
// next token). The forward and backward run on pbllm's model code with
// gradient checkpointing per decoder layer: the forward keeps each layer's
// input only, and the backward runs each layer again with autograd.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <memory>
#include <vector>

#include "pbllm/io/safetensors.h"
#include "pbllm/model/decoder.h"
#include "pbllm/qat/binarized_model.h"

namespace torch::optim {
class AdamW;
}

namespace pbllm::qat {

struct TrainingOptions {
  int64_t steps = 1000;
  int64_t batch = 2;         // windows per forward (the reference's per-device batch)
  int64_t accumulation = 4;  // forwards per optimizer step
  double learning_rate = 1e-4;
  double warmup_fraction = 0.05;  // warmup steps = fraction x steps, not rounded (as the reference passes it)
  double weight_decay = 0;
  double max_grad_norm = 1.0;  // 0: no clipping
  int64_t windows_per_step() const { return batch * accumulation; }
  void validate() const;  // one-line errors for values out of range
};

// Hugging Face's get_cosine_schedule_with_warmup factor of optimizer step
// `step` (0-based): step / warmup during the warmup (0 for the first step),
// then 0.5 (1 + cos(pi progress)).
double learning_rate_factor(int64_t step, int64_t steps, double warmup_steps);

// The causal-LM loss of `ids` [batch, seq] and, scaled by `gradient_scale`,
// its gradients accumulated into the trained tensors' .grad (gradient
// checkpointing per layer, see above). Returns the loss.
double loss_and_gradients(const model::DecoderModel& model, const at::Tensor& ids, double gradient_scale);

struct StepReport {
  int64_t step = 0;  // 1-based: the number of optimizer steps done
  double loss = 0, learning_rate = 0, grad_norm = 0, seconds = 0;
};

class Trainer {
 public:
  Trainer(const model::DecoderModel& model, BinarizedModel& binarized, TrainingOptions options);
  ~Trainer();

  // Optimizer step steps_done() on `windows` (windows_per_step() windows of equal length).
  StepReport step(const std::vector<std::vector<int32_t>>& windows);
  int64_t steps_done() const { return steps_done_; }

  // The whole training state (trained tensors, kept scales, AdamW's moments,
  // the step) and back: a run restored from it goes on bit for bit.
  // `history` (the caller's record of the steps so far) is kept with it.
  void save_state(const std::filesystem::path& file, const nlohmann::json& history) const;
  nlohmann::json restore_state(const std::filesystem::path& file);

 private:
  const model::DecoderModel& model_;
  BinarizedModel& binarized_;
  TrainingOptions options_;
  std::vector<at::Tensor> parameters_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  int64_t steps_done_ = 0;
};

}  // namespace pbllm::qat
