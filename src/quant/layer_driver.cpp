#include "pbllm/quant/layer_driver.h"

#include <ATen/ops/empty_like.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/trace.h>
#include <ATen/ops/tensor.h>
#include <c10/core/GradMode.h>

#include <chrono>
#include <map>
#include <memory>

#include "pbllm/core/check.h"
#include "pbllm/core/interrupt.h"
#include "pbllm/quant/hessian.h"
#include "pbllm/quant/run_plan.h"
#include "pbllm/quant/run_state.h"
#include "pbllm/report/logging.h"
#include "pbllm/report/profile.h"
#include "pbllm/report/progress.h"

namespace pbllm::quant {

bool LinearSelection::selected(int64_t layer, const std::string& linear) const {
  const bool inside = minlayer <= layer && layer < maxlayer && linear.find(quant_only) != std::string::npos;
  return inside != invert;
}

int64_t require_selected_linears(const model::DecoderModel& model, const LinearSelection& selection) {
  int64_t count = 0;
  for (int64_t layer = 0; layer < model.num_layers(); ++layer)
    for (const std::string& linear : model.linear_names()) count += selection.selected(layer, linear) ? 1 : 0;
  std::string names;
  for (const std::string& linear : model.linear_names()) names += (names.empty() ? "" : ", ") + linear;
  PBLLM_CHECK(count > 0, "--minlayer ", selection.minlayer, " --maxlayer ", selection.maxlayer, " --quant_only '",
              selection.quant_only, "'", selection.invert ? " --invert" : "", " select none of the ",
              model.num_layers(), " layers' Linears (", names, ")");
  return count;
}

at::ScalarType auto_calibration_dtype(const model::DecoderModel& model) {
  const at::ScalarType stored = model.weight(model.linear_weight_name(0, model.linear_names().front())).scalar_type();
  const bool sixteen_bit = stored == at::kHalf || stored == at::kBFloat16;
  return sixteen_bit && model.compute_dtype() == at::kFloat ? stored : at::ScalarType::Undefined;
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
  // After the Linear is quantized: a Hessian is freed with the last Linear that reads it.
  void release(const std::string& linear) { accumulators_.erase(linear); }

 private:
  std::vector<std::string> linears_;
  std::map<std::string, std::shared_ptr<HessianAccumulator>> accumulators_;
  at::Tensor last_input_;
  std::shared_ptr<HessianAccumulator> last_accumulator_;
};

// Runs layer `index` on every sample, one sequence at a time as the reference
// does, writing into one preallocated tensor (a list joined at the end would
// hold the layer's outputs twice: 2 GB more at LLaMA-7B, nsamples 128).
// Calibration activations held in float16 (GptqPbOptions::calibration_dtype)
// overflow above 65504: one line, not a NaN Hessian a layer later.
void check_held(const at::Tensor& hidden, const std::string& what) {
  PBLLM_CHECK(hidden.scalar_type() != at::kHalf || at::isfinite(hidden).all().item<bool>(), what,
              " overflow float16 (above 65504): hold the calibration activations in bfloat16");
}

// The outputs are held in the inputs' dtype (GptqPbOptions::calibration_dtype);
// each window runs in the compute dtype.
at::Tensor run_layer(const model::DecoderModel& model, int64_t index, const at::Tensor& inputs,
                     HessianObserver* observer) {
  const auto timed = report::timed(report::Phase::forward, layer_forward_flops(model, index, inputs.size(0), inputs.size(1)));
  at::Tensor outputs = at::empty_like(inputs);
  for (int64_t sample = 0; sample < inputs.size(0); ++sample) {
    check_interrupted();
    if (observer) observer->next_forward();
    const at::Tensor window = inputs.narrow(0, sample, 1).to(model.compute_dtype());
    outputs.narrow(0, sample, 1).copy_(model.layer(index, window, observer));
  }
  return outputs;
}

at::Tensor embed_timed(const model::DecoderModel& model, const at::Tensor& ids) {
  const auto timed = report::timed(report::Phase::forward);
  return model.embed(ids);
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

namespace {

// GPTQ-PB on the `chosen` Linears of `layer`, whose input is `hidden`: the
// Hessians from one pass with the original weights, then each Linear in turn.
LayerState quantize_layer(model::DecoderModel& model, int64_t layer, const at::Tensor& hidden,
                          const std::vector<std::string>& chosen, const GptqPbOptions& options, bool pack_linears,
                          const std::function<void(const LinearReport&)>& on_linear) {
  LayerState finished;
  if (chosen.empty()) return finished;
  HessianObserver observer(chosen);
  run_layer(model, layer, hidden, &observer);
  // The Linears that read one input share its Hessian, and so its factor U:
  // made once per Hessian (q/k/v: one factorisation instead of three). They
  // come one after another, so only the last factor is kept.
  const void* factored = nullptr;
  HessianFactor factor;
  for (const std::string& linear : chosen) {
    // Before each Linear, not after the last: a finished layer is kept before the run stops.
    check_interrupted();
    const auto start = std::chrono::steady_clock::now();
    const std::string weight_name = model.linear_weight_name(layer, linear);
    const std::string label = str_cat("layer ", layer, " ", linear);
    const at::Tensor hessian = observer.hessian(linear);  // a handle: release() below may free the accumulator
    log::debug(str_cat(label, ": Hessian trace ", hessian.trace().item<double>()));
    // On a GPU the weight joins its Hessian there and the CUDA kernel runs the column loop.
    const at::Tensor weight = model.weight(weight_name).to(model.device());
    if (factored != hessian.data_ptr()) {
      factor = HessianFactor{};  // the previous U freed first
      factor = factor_hessian(hessian, options, label);
      factored = hessian.data_ptr();
    }
    const GptqPbResult result = gptq_pb_quantize(weight, hessian, options, label, &factor);
    observer.release(linear);
    if (pack_linears)
      finished.packed[weight_name] = std::make_shared<const pack::PackedLinear>(pack::encode_linear(
          quantized_linear(result, options, model.weight(weight_name).scalar_type()), weight_name));
    model.set_weight(weight_name, result.weight);
    finished.weights.emplace_back(weight_name, model.weight(weight_name));
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
    finished.reports.push_back(std::move(entry));
  }
  return finished;
}

// A layer read back from the state folder: its weights set as quantizing them would.
LayerState restore_layer(model::DecoderModel& model, const RunState& state, int64_t layer,
                         const std::function<void(const LinearReport&)>& on_linear) {
  const auto timed = report::timed(report::Phase::load);
  LayerState kept = state.load_layer(layer);
  for (const auto& [name, weight] : kept.weights) model.set_weight(name, weight);
  for (LinearReport& report : kept.reports) {
    report.kept = true;
    if (on_linear) on_linear(report);
  }
  return kept;
}

// Keeps a finished layer in the state folder. A failed write (a full disk)
// does not stop the run, it only loses the resume: the state comes back null.
RunState* keep_layer(RunState& state, const LayerState& finished, int64_t layer) {
  try {
    const auto timed = report::timed(report::Phase::save);
    state.save_layer(finished);
  } catch (const Interrupted&) {
    throw;
  } catch (const Error& error) {
    log::warn(str_cat("cannot keep layer ", layer, " for a resume (", error.what(),
                      "); the run goes on, but a rerun would resume at layer ", state.finished_layers()));
    return nullptr;
  }
  signal_self_for_test("layer", layer);
  return &state;
}

}  // namespace

std::vector<LinearReport> quantize_layers(model::DecoderModel& model,
                                          const std::vector<std::vector<int32_t>>& calibration_windows,
                                          const GptqPbOptions& options, const LinearSelection& selection,
                                          const std::function<void(const LinearReport&)>& on_linear,
                                          pack::PackedLinears* packed, RunState* state) {
  options.validate();
  PBLLM_CHECK(!calibration_windows.empty(), "no calibration windows (--nsamples must be positive)");
  c10::NoGradGuard no_grad;
  std::vector<int64_t> flat;
  for (const auto& window : calibration_windows) flat.insert(flat.end(), window.begin(), window.end());
  const at::Tensor ids = at::tensor(flat, at::TensorOptions().dtype(at::kLong))
                             .view({static_cast<int64_t>(calibration_windows.size()), -1});
  at::Tensor hidden = embed_timed(model, ids);
  if (options.calibration_dtype != at::ScalarType::Undefined) hidden = hidden.to(options.calibration_dtype);
  check_held(hidden, "the embeddings");

  const int64_t kept_layers = state ? state->finished_layers() : 0;
  PBLLM_CHECK(kept_layers <= model.num_layers(), state ? state->dir().string() : "", " holds ", kept_layers,
              " layers; the model has ", model.num_layers(), ": add --restart to start over");
  if (kept_layers > 0)
    log::info(str_cat("resuming: layers 0..", kept_layers - 1, " are read back from ", state->dir().string(),
                      " and their outputs recomputed"));
  std::vector<LinearReport> reports;
  report::Progress progress("quantize", model.num_layers(), "layers");
  LayerResidency residency(model);
  for (int64_t layer = 0; layer < model.num_layers(); ++layer) {
    residency.hold(layer);
    log::debug(str_cat("layer ", layer, ": ", model.resident_bytes() >> 20, " MiB of weights on ", model.device().str()));
    LayerState finished;
    if (layer < kept_layers) {
      finished = restore_layer(model, *state, layer, on_linear);
    } else {
      std::vector<std::string> chosen;
      for (const std::string& linear : model.linear_names())
        if (selection.selected(layer, linear)) chosen.push_back(linear);
      finished = quantize_layer(model, layer, hidden, chosen, options, packed != nullptr, on_linear);
      if (state) state = keep_layer(*state, finished, layer);
    }
    if (packed != nullptr) packed->insert(finished.packed.begin(), finished.packed.end());
    reports.insert(reports.end(), finished.reports.begin(), finished.reports.end());
    hidden = run_layer(model, layer, hidden, nullptr);
    check_held(hidden, str_cat("layer ", layer, "'s outputs"));
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

std::vector<LinearReport> linear_reports_from_json(const nlohmann::json& list) {
  std::vector<LinearReport> reports;
  for (const nlohmann::json& item : list) {
    LinearReport r;
    r.layer = item.at("layer").get<int64_t>();
    r.name = item.at("name").get<std::string>();
    const auto shape = item.at("shape").get<std::vector<int64_t>>();
    PBLLM_CHECK(shape.size() == 2, "a Linear's shape is not [rows, columns]");
    r.rows = shape[0];
    r.columns = shape[1];
    r.loss = item.at("loss").get<double>();
    r.salient_fraction = item.at("salient_fraction").get<double>();
    r.seconds = item.at("seconds").get<double>();
    r.percdamp_used = item.at("percdamp").get<double>();
    r.damping_retries = item.at("damping_retries").get<int>();
    reports.push_back(std::move(r));
  }
  return reports;
}

}  // namespace pbllm::quant
