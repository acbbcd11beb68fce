#include "pbllm/qat/trainer.h"

#include <ATen/TensorOperators.h>
#include <ATen/autocast_mode.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/from_blob.h>
#include <nlohmann/json.hpp>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <chrono>
#include <cmath>
#include <limits>

#include "pbllm/core/check.h"

namespace pbllm::qat {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr const char* kStateKey = "pbllm.qat_state";

// bf16 autocast on a GPU (the reference trains with bf16=True); float32 on the CPU.
class AutocastOnGpu {
 public:
  explicit AutocastOnGpu(const at::Device& device) : on_(device.is_cuda()) {
    if (!on_) return;
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
  }
  ~AutocastOnGpu() {
    if (!on_) return;
    at::autocast::set_autocast_enabled(at::kCUDA, false);
    at::autocast::clear_cache();
  }

 private:
  bool on_;
};

// [windows, seq] int64 ids of windows[first, first + count).
at::Tensor window_batch(const std::vector<std::vector<int32_t>>& windows, size_t first, size_t count) {
  const size_t length = windows.at(first).size();
  at::Tensor ids = at::empty({static_cast<int64_t>(count), static_cast<int64_t>(length)}, at::kLong);
  int64_t* out = ids.data_ptr<int64_t>();
  for (size_t w = 0; w < count; ++w) {
    const auto& window = windows.at(first + w);
    PBLLM_CHECK(window.size() == length, "training windows differ in length (", window.size(), " and ", length, ")");
    for (size_t i = 0; i < length; ++i) out[w * length + i] = window[i];
  }
  return ids;
}

std::string state_name(const char* kind, const std::string& name) { return str_cat(kind, "/", name); }

}  // namespace

void TrainingOptions::validate() const {
  PBLLM_CHECK(steps >= 1, "--train_steps ", steps, " must be at least 1");
  PBLLM_CHECK(batch >= 1 && accumulation >= 1, "--batch_size and --gradient_accumulation_steps must be at least 1");
  PBLLM_CHECK(std::isfinite(learning_rate) && learning_rate > 0 && learning_rate <= 1, "--lr ", learning_rate,
              " must be in (0, 1]");
  PBLLM_CHECK(batch <= (int64_t{1} << 20) && accumulation <= (int64_t{1} << 20) && steps <= (int64_t{1} << 40),
              "--batch_size, --gradient_accumulation_steps and --train_steps are limited to 2^20, 2^20 and 2^40");
  PBLLM_CHECK(warmup_fraction >= 0 && warmup_fraction < 1, "--warmup_ratio ", warmup_fraction, " is outside [0, 1)");
  PBLLM_CHECK(std::isfinite(weight_decay) && weight_decay >= 0, "--weight_decay ", weight_decay, " must be >= 0");
  PBLLM_CHECK(std::isfinite(max_grad_norm) && max_grad_norm >= 0, "--max_grad_norm ", max_grad_norm, " must be >= 0");
}

double learning_rate_factor(int64_t step, int64_t steps, double warmup_steps) {
  // transformers' lr_lambda, with its max(1, ...) guards.
  if (step < warmup_steps) return static_cast<double>(step) / std::max(1.0, warmup_steps);
  const double progress = (step - warmup_steps) / std::max(1.0, steps - warmup_steps);
  return std::max(0.0, 0.5 * (1.0 + std::cos(kPi * 0.5 * 2.0 * progress)));
}

double loss_and_gradients(const model::DecoderModel& model, const at::Tensor& ids, double gradient_scale) {
  PBLLM_CHECK(ids.dim() == 2 && ids.size(1) >= 2, "training needs [batch, seq >= 2] ids, got ", ids.sizes());
  const AutocastOnGpu autocast(model.device());
  // The embedding with autograd (OPT's project_in is trained); the layers without.
  const at::Tensor embedded = model.embed(ids);
  std::vector<at::Tensor> inputs;
  at::Tensor hidden = embedded.detach();
  {
    const at::NoGradGuard no_grad;
    for (int64_t i = 0; i < model.num_layers(); ++i) {
      inputs.push_back(hidden);
      hidden = model.layer(i, hidden);
    }
  }
  // The head and the loss: position t predicts token t + 1 (the last position predicts nothing).
  const int64_t positions = ids.size(1) - 1;
  const at::Tensor last = hidden.detach().requires_grad_(true);
  const at::Tensor logits = model.head(last.narrow(1, 0, positions));
  const at::Tensor targets = ids.narrow(1, 1, positions).to(model.device()).reshape({-1});
  const at::Tensor loss = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}).to(at::kFloat), targets);
  (loss * gradient_scale).backward();
  at::Tensor grad = last.grad();
  // Each layer again, now with autograd, from its kept input; its input's
  // gradient goes on to the layer before.
  for (int64_t i = model.num_layers() - 1; i >= 0; --i) {
    const bool needs_input_grad = i > 0 || embedded.requires_grad();
    const at::Tensor x = inputs[i].detach().requires_grad_(needs_input_grad);
    inputs[i] = at::Tensor();
    model.layer(i, x).backward(grad);
    grad = needs_input_grad ? x.grad() : at::Tensor();
  }
  if (embedded.requires_grad()) embedded.backward(grad);
  return loss.item<double>();
}

Trainer::Trainer(const model::DecoderModel& model, BinarizedModel& binarized, TrainingOptions options)
    : model_(model), binarized_(binarized), options_(options), parameters_(binarized.parameters()) {
  options_.validate();
  // Two groups, as the Trainer makes them: biases get no weight decay.
  std::vector<at::Tensor> decayed, biases;
  const auto& names = binarized.parameter_names();
  for (size_t i = 0; i < parameters_.size(); ++i)
    (names[i].size() > 5 && names[i].compare(names[i].size() - 5, 5, ".bias") == 0 ? biases : decayed)
        .push_back(parameters_[i]);
  const auto adamw = [&](double weight_decay) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(options_.learning_rate).betas({0.9, 0.999}).eps(1e-8).weight_decay(weight_decay));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decayed, adamw(options_.weight_decay));
  if (!biases.empty()) groups.emplace_back(biases, adamw(0.0));
  optimizer_ = std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(options_.learning_rate));
}

Trainer::~Trainer() = default;

StepReport Trainer::step(const std::vector<std::vector<int32_t>>& windows) {
  PBLLM_CHECK(static_cast<int64_t>(windows.size()) == options_.windows_per_step(), "a training step takes ",
              options_.windows_per_step(), " windows, got ", windows.size());
  const auto start = std::chrono::steady_clock::now();
  StepReport report;
  report.learning_rate = options_.learning_rate *
                         learning_rate_factor(steps_done_, options_.steps, options_.warmup_fraction * options_.steps);
  for (auto& group : optimizer_->param_groups())
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(report.learning_rate);
  optimizer_->zero_grad();
  binarized_.set_training(true);
  for (int64_t micro = 0; micro < options_.accumulation; ++micro) {
    const at::Tensor ids = window_batch(windows, micro * options_.batch, options_.batch);
    report.loss += loss_and_gradients(model_, ids, 1.0 / options_.accumulation) / options_.accumulation;
  }
  // Without clipping the norm is still measured (an infinite bound scales by 1).
  report.grad_norm = torch::nn::utils::clip_grad_norm_(
      parameters_, options_.max_grad_norm > 0 ? options_.max_grad_norm : std::numeric_limits<double>::infinity());
  optimizer_->step();
  binarized_.set_training(false);  // the weights the next evaluation or save uses
  report.step = ++steps_done_;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

void Trainer::save_state(const std::filesystem::path& file, const nlohmann::json& history) const {
  io::NamedTensors tensors;
  const auto& names = binarized_.parameter_names();
  int64_t adam_step = 0;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    tensors.emplace_back(state_name("parameter", names[i]), parameters_[i].detach());
    const auto kept = optimizer_->state().find(parameters_[i].unsafeGetTensorImpl());
    if (kept == optimizer_->state().end()) continue;  // no step yet
    const auto& adam = static_cast<const torch::optim::AdamWParamState&>(*kept->second);
    tensors.emplace_back(state_name("exp_avg", names[i]), adam.exp_avg());
    tensors.emplace_back(state_name("exp_avg_sq", names[i]), adam.exp_avg_sq());
    adam_step = adam.step();
  }
  const auto scales = binarized_.scales();
  for (size_t i = 0; i < scales.size(); ++i) tensors.emplace_back(str_cat("scale/", i), scales[i]);
  const nlohmann::json state = {
      {"steps_done", steps_done_}, {"adam_step", adam_step}, {"scales", scales.size()}, {"history", history}};
  io::save_safetensors(file.string(), tensors, {{kStateKey, state.dump()}});
}

nlohmann::json Trainer::restore_state(const std::filesystem::path& file) {
  const io::SafetensorsFile saved(file.string());
  const auto metadata = saved.metadata().find(kStateKey);
  PBLLM_CHECK(metadata != saved.metadata().end(), file.string(), ": no ", kStateKey, " metadata");
  const auto state = nlohmann::json::parse(metadata->second);
  const auto tensor = [&](const std::string& name, const at::Tensor& like) {
    PBLLM_CHECK(saved.contains(name), file.string(), ": no tensor ", name);
    const at::Tensor t = saved.tensor(name);
    PBLLM_CHECK(t.sizes() == like.sizes(), file.string(), ": ", name, " is ", t.sizes(), ", expected ", like.sizes());
    return t.to(like.options(), /*non_blocking=*/false, /*copy=*/true);
  };
  const auto& names = binarized_.parameter_names();
  const int64_t adam_step = state.at("adam_step").get<int64_t>();
  {
    const at::NoGradGuard no_grad;
    for (size_t i = 0; i < parameters_.size(); ++i) {
      parameters_[i].copy_(tensor(state_name("parameter", names[i]), parameters_[i]));
      if (adam_step == 0) continue;
      auto adam = std::make_unique<torch::optim::AdamWParamState>();
      adam->step(adam_step);
      adam->exp_avg(tensor(state_name("exp_avg", names[i]), parameters_[i]));
      adam->exp_avg_sq(tensor(state_name("exp_avg_sq", names[i]), parameters_[i]));
      optimizer_->state()[parameters_[i].unsafeGetTensorImpl()] = std::move(adam);
    }
  }
  std::vector<at::Tensor> scales = binarized_.scales();
  for (size_t i = 0; i < scales.size(); ++i) scales[i] = tensor(str_cat("scale/", i), scales[i]);
  binarized_.set_scales(scales);
  const int64_t steps_done = state.at("steps_done").get<int64_t>();
  const nlohmann::json history = state.value("history", nlohmann::json::array());
  PBLLM_CHECK(steps_done >= 0 && steps_done <= options_.steps && history.is_array() &&
                  static_cast<int64_t>(history.size()) == steps_done,
              file.string(), ": it says ", steps_done, " steps of ", options_.steps, " are done, with ", history.size(),
              " recorded");
  steps_done_ = steps_done;
  return history;
}

}  // namespace pbllm::qat
