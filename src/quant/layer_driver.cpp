#include "pbllm/quant/layer_driver.h"

#include <ATen/ops/empty_like.h>
#include <ATen/ops/trace.h>
#include <ATen/ops/tensor.h>
#include <c10/core/GradMode.h>

#include <chrono>
#include <map>
#include <memory>

#include "pbllm/core/check.h"
#include "pbllm/core/interrupt.h"
#include "pbllm/quant/hessian.h"
#include "pbllm/report/logging.h"
#include "pbllm/report/progress.h"

namespace pbllm::quant {

bool LinearSelection::selected(int64_t layer, const std::string& linear) const {
  const bool inside = minlayer <= layer && layer < maxlayer && linear.find(quant_only) != std::string::npos;
  return inside != invert;
}

namespace {

// Collects one Hessian per distinct input: Linears that read the same tensor
// (q/k/v, gate/up) share one accumulator, so it is built once, not three
// times as in the reference (the values are the same).
class HessianObserver : public model::LinearInputObserver {
 public:
  explicit HessianObserver(std::vector<std::string> linears) : linears_(std::move(linears)) {}

  void observe(int64_t, const std::string& linear, const at::Tensor& input) override {
    if (std::find(linears_.begin(), linears_.end(), linear) == linears_.end()) return;
    const bool same_input = last_input_.defined() && last_input_.data_ptr() == input.data_ptr() &&
                            last_input_.sizes() == input.sizes();
    auto& accumulator = accumulators_[linear];
    if (same_input && last_accumulator_) {
      if (!accumulator) accumulator = last_accumulator_;
      if (accumulator == last_accumulator_) return;  // already added for this forward
    }
    if (!accumulator) accumulator = std::make_shared<HessianAccumulator>(input.size(-1), input.device());
    accumulator->add(input);
    last_input_ = input;
    last_accumulator_ = accumulator;
  }
  // Called between forwards: the next input is a new tensor even if the allocator reuses the address.
  void next_forward() {
    last_input_ = at::Tensor();
    last_accumulator_.reset();
  }
  const at::Tensor& hessian(const std::string& linear) const {
    auto found = accumulators_.find(linear);
    PBLLM_CHECK(found != accumulators_.end(), "no calibration input reached ", linear);
    return found->second->hessian();
  }

 private:
  std::vector<std::string> linears_;
  std::map<std::string, std::shared_ptr<HessianAccumulator>> accumulators_;
  at::Tensor last_input_;
  std::shared_ptr<HessianAccumulator> last_accumulator_;
};

// Runs layer `index` on every sample, one sequence at a time as the reference
// does, writing into one preallocated tensor (a list joined at the end would
// hold the layer's outputs twice: 2 GB more at LLaMA-7B, nsamples 128).
at::Tensor run_layer(const model::DecoderModel& model, int64_t index, const at::Tensor& inputs,
                     HessianObserver* observer) {
  at::Tensor outputs = at::empty_like(inputs);
  for (int64_t sample = 0; sample < inputs.size(0); ++sample) {
    check_interrupted();
    if (observer) observer->next_forward();
    outputs.narrow(0, sample, 1).copy_(model.layer(index, inputs.narrow(0, sample, 1), observer));
  }
  return outputs;
}

// On a GPU only the layer being quantized (and the calibration activations)
// is on the device, the rest in host memory; the model's residency is put
// back afterwards, so an evaluation that follows keeps its copies.
class LayerResidency {
 public:
  explicit LayerResidency(model::DecoderModel& model) : model_(model), before_(model.residency()) {
    if (model.device().is_cuda()) model.set_residency(model::Residency::held_layers);
  }
  ~LayerResidency() { model_.set_residency(before_); }
  // The layer's compute copies are made once for its two passes over the samples.
  void hold(int64_t layer) {
    if (held_ >= 0) model_.release_layer(held_);
    model_.hold_layer(layer);
    held_ = layer;
  }

 private:
  model::DecoderModel& model_;
  model::Residency before_;
  int64_t held_ = -1;
};

}  // namespace

std::vector<LinearReport> quantize_layers(model::DecoderModel& model,
                                          const std::vector<std::vector<int32_t>>& calibration_windows,
                                          const GptqPbOptions& options, const LinearSelection& selection,
                                          const std::function<void(const LinearReport&)>& on_linear,
                                          pack::PackedLinears* packed) {
  options.validate();
  PBLLM_CHECK(!calibration_windows.empty(), "no calibration windows (--nsamples must be positive)");
  c10::NoGradGuard no_grad;
  std::vector<int64_t> flat;
  for (const auto& window : calibration_windows) flat.insert(flat.end(), window.begin(), window.end());
  const at::Tensor ids = at::tensor(flat, at::TensorOptions().dtype(at::kLong))
                             .view({static_cast<int64_t>(calibration_windows.size()), -1});
  at::Tensor hidden = model.embed(ids);

  std::vector<LinearReport> reports;
  report::Progress progress("quantize", model.num_layers(), "layers");
  LayerResidency residency(model);
  for (int64_t layer = 0; layer < model.num_layers(); ++layer) {
    residency.hold(layer);
    log::debug(str_cat("layer ", layer, ": ", model.resident_bytes() >> 20, " MiB of weights on ", model.device().str()));
    std::vector<std::string> chosen;
    for (const std::string& linear : model.linear_names())
      if (selection.selected(layer, linear)) chosen.push_back(linear);
    if (!chosen.empty()) {
      HessianObserver observer(chosen);
      run_layer(model, layer, hidden, &observer);
      for (const std::string& linear : chosen) {
        const auto start = std::chrono::steady_clock::now();
        const std::string weight_name = model.linear_weight_name(layer, linear);
        const std::string label = str_cat("layer ", layer, " ", linear);
        const at::Tensor& hessian = observer.hessian(linear);
        log::debug(str_cat(label, ": Hessian trace ", hessian.trace().item<double>()));
        // On a GPU the weight joins its Hessian there and the CUDA kernel runs the column loop.
        const at::Tensor weight = model.weight(weight_name).to(model.device());
        const GptqPbResult result = gptq_pb_quantize(weight, hessian, options, label);
        if (packed != nullptr)
          (*packed)[weight_name] = std::make_shared<const pack::PackedLinear>(pack::encode_linear(
              quantized_linear(result, options, model.weight(weight_name).scalar_type()), weight_name));
        model.set_weight(weight_name, result.weight);
        LinearReport entry;
        entry.layer = layer;
        entry.name = linear;
        entry.rows = result.weight.size(0);
        entry.columns = result.weight.size(1);
        entry.loss = result.loss;
        entry.salient_fraction = result.salient_fraction;
        entry.percdamp_used = result.percdamp_used;
        entry.damping_retries = result.damping_retries;
        entry.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (on_linear) on_linear(entry);
        reports.push_back(std::move(entry));
        check_interrupted();
      }
    }
    hidden = run_layer(model, layer, hidden, nullptr);
    progress.update(layer + 1);
  }
  return reports;
}

pack::QuantizedLinear quantized_linear(const GptqPbResult& result, const GptqPbOptions& options,
                                       at::ScalarType checkpoint_dtype) {
  pack::QuantizedLinear linear;
  linear.weight = result.weight;
  linear.salient = ~result.binarized;
  linear.high_scale = result.high_scale;
  linear.high_zero = result.high_zero;
  linear.low_mean = result.low_mean;
  linear.low_scale = result.low_scale;
  linear.low_zero = result.low_zero;
  linear.method = options.low.method;
  linear.high_bit = options.high_bit;
  linear.groupsize = options.groupsize;
  linear.dtype = checkpoint_dtype;
  return linear;
}

nlohmann::json linear_reports_json(const std::vector<LinearReport>& reports) {
  nlohmann::json list = nlohmann::json::array();
  for (const LinearReport& r : reports)
    list.push_back({{"layer", r.layer},
                    {"name", r.name},
                    {"shape", {r.rows, r.columns}},
                    {"loss", r.loss},
                    {"salient_fraction", r.salient_fraction},
                    {"seconds", r.seconds},
                    {"percdamp", r.percdamp_used},
                    {"damping_retries", r.damping_retries}});
  return list;
}

}  // namespace pbllm::quant
