#include "pbllm/qat/binarized_model.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/zeros.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <set>

#include "pbllm/core/check.h"
#include "pbllm/pack/packed_checkpoint.h"
#include "pbllm/report/logging.h"

namespace pbllm::qat {
namespace fs = std::filesystem;

namespace {

constexpr const char* kHeadName = "lm_head.weight";

// The salient masks of a packed PB checkpoint, checked to be GPTQ-PB's for
// this outlier fraction (the reference reads mask_{1 - F} files).
pack::PackedLinears read_salient_masks(const fs::path& dir, double outlier_fraction) {
  const fs::path file = dir / pack::kPackedWeightsFile;
  PBLLM_CHECK(fs::is_regular_file(file), "--masks ", dir.string(), " has no ", pack::kPackedWeightsFile,
              ": write one with pbllm-quantize MODEL DATASET xnor --salient_metric hessian --low_frac ",
              1 - outlier_fraction, " --save MASKS --format pb, then give --masks MASKS");
  const io::SafetensorsFile weights(file.string());
  const auto settings = weights.metadata().find("pbllm.settings");
  PBLLM_CHECK(settings != weights.metadata().end(), file.string(), ": no pbllm.settings metadata");
  const auto json = nlohmann::json::parse(settings->second, nullptr, false);
  PBLLM_CHECK(!json.is_object() || json.value("tool", "") != "pbllm-qat", "--masks ", dir.string(),
              " is pbllm-qat's output; the hessian masks come from pbllm-quantize MODEL DATASET xnor "
              "--salient_metric hessian --low_frac ", 1 - outlier_fraction, " --save MASKS --format pb");
  PBLLM_CHECK(json.is_object() && json.contains("low_frac") && json.at("low_frac").is_number(), file.string(),
              ": pbllm.settings has no low_frac");
  const double low_frac = json.at("low_frac").get<double>();
  PBLLM_CHECK(std::abs(low_frac - (1 - outlier_fraction)) < 1e-9, "--masks ", dir.string(), " was written with --low_frac ",
              low_frac, ", which keeps ", 1 - low_frac, " salient, but --outlier_fraction is ", outlier_fraction);
  if (json.value("salient_metric", "") != "hessian")
    log::warn(str_cat("--masks ", dir.string(), " holds ", json.value("salient_metric", "(unknown)"),
                      " salient masks, not hessian ones"));
  return pack::read_packed_linears(weights);
}

}  // namespace

OutlierSelection outlier_selection_from_method(const std::string& method) {
  if (method == "xnor_outlier") return OutlierSelection::magnitude;
  if (method == "xnor_outlier_hessian") return OutlierSelection::hessian;
  throw Error(str_cat("unknown binarization method '", method, "' (xnor_outlier or xnor_outlier_hessian)"));
}

void BinarizationOptions::validate() const {
  PBLLM_CHECK(outlier_fraction > 0 && outlier_fraction < 1, "--outlier_fraction ", outlier_fraction,
              " is outside (0, 1)");
  PBLLM_CHECK(selection == OutlierSelection::magnitude || !masks.empty(),
              "xnor_outlier_hessian needs --masks DIR: the packed PB checkpoint of pbllm-quantize --salient_metric "
              "hessian --low_frac ", 1 - outlier_fraction, " --format pb (the reference falls back to magnitude "
              "outliers without telling; pbllm does not)");
  PBLLM_CHECK(selection == OutlierSelection::hessian || masks.empty(), "--masks is for xnor_outlier_hessian only");
}

BinarizedModel::BinarizedModel(model::DecoderModel& model, BinarizationOptions options)
    : model_(model), options_(std::move(options)) {
  options_.validate();
  PBLLM_CHECK(model.packed_linears().empty(), "the model is a packed PB checkpoint: train from the original model");
  pack::PackedLinears masks;
  if (options_.selection == OutlierSelection::hessian) masks = read_salient_masks(options_.masks, options_.outlier_fraction);
  const std::string head = model.head_weight_name();
  // pbllm-quantize quantizes (and packs) the layers' Linears only.
  std::set<std::string> masked;
  for (int64_t layer = 0; layer < model.num_layers(); ++layer)
    for (const std::string& linear : model.linear_names()) masked.insert(model.linear_weight_name(layer, linear));
  const auto float_options = at::TensorOptions().dtype(at::kFloat).device(model.device());
  for (const std::string& name : model.all_linear_weight_names()) {
    const bool is_head = name == head;
    if (is_head && options_.corrections.keep_head) continue;
    Linear linear;
    linear.weight_name = name;
    linear.head = is_head;
    linear.dtype = model.weight(name).scalar_type();
    const at::Tensor w = model.weight(name).to(float_options, /*non_blocking=*/false, /*copy=*/true);
    PBLLM_CHECK(at::isfinite(w).all().item<bool>(), name, " holds NaN or infinite weights");
    if (options_.selection == OutlierSelection::hessian && masked.count(name)) {
      const auto found = masks.find(name);
      PBLLM_CHECK(found != masks.end(), "--masks ", options_.masks.string(), " has no salient mask for ", name,
                  ": quantize every Linear (no --minlayer / --maxlayer / --quant_only) of this model");
      const pack::PackedLinear& packed = *found->second;
      PBLLM_CHECK(packed.rows == w.size(0) && packed.columns == w.size(1), "--masks ", options_.masks.string(),
                  ": the mask of ", name, " is ", packed.rows, " x ", packed.columns, " but the weight is ",
                  w.size(0), " x ", w.size(1), " (masks of another model?)");
      linear.outliers = pack::decode_mask(packed.mask_view()).to(model.device());
    } else {
      if (options_.selection == OutlierSelection::hessian)
        log::info(str_cat(is_head ? "the head (" : "", name, is_head ? ")" : "",
                          ": magnitude outliers (pbllm-quantize quantizes the layers' Linears only, so --masks has "
                          "no mask for it; the reference falls back the same way)"));
      linear.outliers = magnitude_outliers(w, options_.outlier_fraction, name);
    }
    // As the reference's gen_outlier_mask: the scale from the original
    // weights (used only before the first training step), then the 8-bit pass.
    linear.scale = binary_scale(w, linear.outliers, options_.corrections.per_row_scale);
    linear.latent = weight_quant_8bit(w, options_.corrections.zero_point).requires_grad_(true);
    linear.grid = eight_bit_grid(w, options_.corrections.zero_point);
    sign_flips_ += (linear.latent.detach().sign() != w.sign()).sum().item<int64_t>();
    const std::string bias = name.substr(0, name.size() - std::string(".weight").size()) + ".bias";
    if (!is_head && model.weights().count(bias)) {
      linear.bias_name = bias;
      linear.bias = model.weight(bias).to(float_options, false, true).requires_grad_(true);
    }
    unties_head_ = unties_head_ || (is_head && name != kHeadName);
    linears_.push_back(std::move(linear));
  }
  for (size_t i = 0; i < linears_.size(); ++i) {
    by_name_[linears_[i].weight_name] = {i, false};
    parameter_names_.push_back(linears_[i].weight_name);
  }
  for (size_t i = 0; i < linears_.size(); ++i)
    if (!linears_[i].bias_name.empty()) {
      by_name_[linears_[i].bias_name] = {i, true};
      parameter_names_.push_back(linears_[i].bias_name);
    }
  model_.set_parameter_source([this](const std::string& name) { return tensor_for(name); });
}

BinarizedModel::~BinarizedModel() { model_.set_parameter_source({}); }

std::vector<at::Tensor> BinarizedModel::parameters() const {
  std::vector<at::Tensor> parameters;
  for (const std::string& name : parameter_names_) {
    const auto& [index, is_bias] = by_name_.at(name);
    parameters.push_back(is_bias ? linears_[index].bias : linears_[index].latent);
  }
  return parameters;
}

void BinarizedModel::set_training(bool training) {
  training_ = training;
  for (Linear& linear : linears_) linear.made = at::Tensor();
}

std::vector<at::Tensor> BinarizedModel::scales() const {
  std::vector<at::Tensor> scales;
  for (const Linear& linear : linears_) scales.push_back(linear.scale);
  return scales;
}

void BinarizedModel::set_scales(const std::vector<at::Tensor>& scales) {
  PBLLM_CHECK(scales.size() == linears_.size(), "set_scales: ", scales.size(), " scales for ", linears_.size(),
              " Linears");
  for (size_t i = 0; i < scales.size(); ++i) {
    PBLLM_CHECK(scales[i].sizes() == linears_[i].scale.sizes(), linears_[i].weight_name, ": a kept scale of shape ",
                scales[i].sizes(), ", expected ", linears_[i].scale.sizes());
    linears_[i].scale = scales[i].to(linears_[i].scale.options());
    linears_[i].made = at::Tensor();
  }
}

at::Tensor BinarizedModel::tensor_for(const std::string& name) {
  const auto found = by_name_.find(name);
  if (found == by_name_.end()) return at::Tensor();
  Linear& linear = linears_[found->second.first];
  if (!found->second.second) return weight_of(linear);
  if (training_) return linear.bias;
  return linear.bias.detach().to(model_.weight(linear.bias_name).scalar_type()).to(at::kFloat);  // as saved
}

at::Tensor BinarizedModel::weight_of(Linear& linear) {
  const bool per_row = options_.corrections.per_row_scale;
  // Made once per change of the latent weights (each training step, the end
  // of training). While training, the scale comes from the latent weights, as
  // in each of the reference's training forwards (within a step they are the
  // same); otherwise the kept one, or with fresh_scale a new one.
  if (!linear.made.defined()) {
    const at::NoGradGuard no_grad;
    if (training_) linear.scale = binary_scale(linear.latent, linear.outliers, per_row);
    const at::Tensor scale = !training_ && options_.corrections.fresh_scale
                                 ? binary_scale(linear.latent, linear.outliers, per_row)
                                 : linear.scale;
    linear.made = partially_binarized(linear.latent.detach(), linear.outliers, scale, false);
    if (!training_) linear.made = linear.made.to(linear.dtype).to(at::kFloat);  // as saved
    linear.made_scale = scale;
  }
  // The forwards that autograd follows (the recomputed layers) make it again, with the straight-through sign.
  if (training_ && at::GradMode::is_enabled())
    return partially_binarized(linear.latent, linear.outliers, linear.scale, options_.train_outliers);
  return linear.made;
}

io::NamedTensors BinarizedModel::effective_weights(at::ScalarType dtype) {
  set_training(false);
  io::NamedTensors tensors;
  for (Linear& linear : linears_) {
    const std::string name = linear.head ? kHeadName : linear.weight_name;
    tensors.emplace_back(name, weight_of(linear).to(at::kCPU, dtype));
    if (linear.bias.defined()) tensors.emplace_back(linear.bias_name, linear.bias.detach().to(at::kCPU, dtype));
  }
  return tensors;
}

io::NamedTensors BinarizedModel::checkpoint_tensors() {
  std::map<std::string, at::Tensor> tensors = model_.weights();
  set_training(false);
  for (Linear& linear : linears_) {
    tensors[linear.head ? kHeadName : linear.weight_name] = weight_of(linear).to(at::kCPU, linear.dtype);
    if (linear.bias.defined())
      tensors[linear.bias_name] = linear.bias.detach().to(at::kCPU, model_.weight(linear.bias_name).scalar_type());
  }
  return {tensors.begin(), tensors.end()};
}

pack::PackedLinears BinarizedModel::packed_linears() {
  PBLLM_CHECK(!options_.train_outliers, "trained outliers are off their 8-bit grid: the packed format needs frozen ones");
  set_training(false);
  pack::PackedLinears packed;
  for (Linear& linear : linears_) {
    const std::string name = linear.head ? kHeadName : linear.weight_name;
    pack::QuantizedLinear q;
    weight_of(linear);  // its scale; the values before the dtype's rounding, which the grids give exactly:
    q.weight = partially_binarized(linear.latent.detach(), linear.outliers, linear.made_scale, false);
    const int64_t rows = q.weight.size(0);
    q.salient = linear.outliers;
    q.high_grid = pack::HighGrid::affine;
    q.high_scale = linear.grid.step;
    q.high_zero = linear.grid.offset;
    q.low_mean = at::zeros({1, rows}, at::kFloat);
    q.low_scale = linear.made_scale.expand({rows, 1}).reshape({1, rows});
    q.method = LowBitMethod::xnor;
    q.high_bit = 8;
    q.dtype = linear.dtype;
    packed[name] = std::make_shared<const pack::PackedLinear>(pack::encode_linear(q, name));
  }
  return packed;
}

int64_t BinarizedModel::weights() const {
  int64_t count = 0;
  for (const Linear& linear : linears_) count += linear.latent.numel();
  return count;
}

int64_t BinarizedModel::row_pointers() const {
  int64_t count = 0;
  for (const Linear& linear : linears_) count += linear.latent.size(0) + 1;
  return count;
}

int64_t BinarizedModel::outliers() const {
  int64_t count = 0;
  for (const Linear& linear : linears_) count += linear.outliers.sum().item<int64_t>();
  return count;
}

std::string save_trained_model(BinarizedModel& binarized, const io::Checkpoint& source, const fs::path& dir,
                               bool packed, const nlohmann::json& settings, nlohmann::json& report) {
  const io::NamedTensors tensors = binarized.checkpoint_tensors();
  int64_t parameters = 0;
  for (const auto& [name, tensor] : tensors) parameters += tensor.numel();
  std::map<std::string, std::string> extra;
  if (binarized.unties_head()) {
    nlohmann::json config = source.config();
    config["tie_word_embeddings"] = false;
    extra["config.json"] = config.dump(2) + "\n";
  }
  const pack::PackedLinears linears = packed ? binarized.packed_linears() : pack::PackedLinears();
  return pack::save_model_folder(source, dir, tensors, packed ? &linears : nullptr, settings, extra, parameters,
                                 binarized.source_parameters(), report);
}

}  // namespace pbllm::qat
