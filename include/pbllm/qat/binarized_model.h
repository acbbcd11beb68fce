// Every Linear of a decoder model as PB-LLM's partially binarized Linear
// (binarized_linear.h), as the reference's replace_with_qlinear does: each
// layer's Linears, OPT's project_in / project_out, and the head (a tied head
// gets its own copy of the embedding table; the input embedding stays). Only
// these latent weights and their biases train, as in the reference, whose
// prepare_model_for_training freezes everything else.
//
// The model computes with them through its parameter source
// (DecoderModel::set_parameter_source), made per forward while training so
// autograd reaches the latent weights, and once per change otherwise.
#pragma once

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <string>
#include <vector>

#include "pbllm/io/safetensors.h"
#include "pbllm/model/decoder.h"
#include "pbllm/pack/packed_checkpoint.h"
#include "pbllm/qat/binarized_linear.h"

namespace pbllm::qat {

// xnor_outlier: magnitude outliers; xnor_outlier_hessian: the complement of
// GPTQ-PB's binarized mask, i.e. its salient weights, for the layers'
// Linears (the head and OPT's project_in / project_out, which pbllm-quantize
// does not quantize, take magnitude outliers).
enum class OutlierSelection { magnitude, hessian };
OutlierSelection outlier_selection_from_method(const std::string& method);

struct BinarizationOptions {
  OutlierSelection selection = OutlierSelection::magnitude;
  double outlier_fraction = 0.1;
  bool train_outliers = false;
  QatCorrections corrections;
  // hessian: a packed PB checkpoint of the same model written by
  // pbllm-quantize --salient_metric hessian --low_frac 1-F --format pb.
  std::filesystem::path masks;
  void validate() const;  // one-line errors for values out of range
};

class BinarizedModel {
 public:
  // Makes the latent weights (each weight through weight_quant_8bit, once)
  // and the outlier masks, and installs itself as `model`'s parameter source.
  BinarizedModel(model::DecoderModel& model, BinarizationOptions options);
  ~BinarizedModel();  // removes the parameter source
  BinarizedModel(const BinarizedModel&) = delete;
  BinarizedModel& operator=(const BinarizedModel&) = delete;

  // The trained tensors: each Linear's latent weight, then its bias (leaves
  // that require grad), named as the checkpoint names them.
  const std::vector<std::string>& parameter_names() const { return parameter_names_; }
  std::vector<at::Tensor> parameters() const;
  // Says the latent weights changed (a step begins, or training ended).
  // Training: each binary scale comes from the latent weights (and is kept),
  // and forwards with autograd on get the straight-through weights. Otherwise
  // the weights are made with the kept scales (or, with the fresh_scale
  // correction, fresh ones) and rounded through the checkpoint's dtype, as
  // saved (so an evaluation of the run is one of the saved model). Either way
  // they are made once until the next call.
  void set_training(bool training);
  // The kept binary scales, one per Linear in parameter order (a resumed run restores them).
  std::vector<at::Tensor> scales() const;
  void set_scales(const std::vector<at::Tensor>& scales);

  // The weights as the trained model computes with them, in `dtype` on the
  // CPU, by the name a saved checkpoint gives them: a tied head's weight
  // becomes "lm_head.weight" (saved untied).
  io::NamedTensors effective_weights(at::ScalarType dtype);
  // The trained model's checkpoint tensors: the model's own, with those of
  // effective_weights in their checkpoint's dtype (a tied head's copy: the
  // embedding's).
  io::NamedTensors checkpoint_tensors();
  // The same weights in the packed PB format, each in its checkpoint's dtype
  // (decoded, equal bit for bit to effective_weights in that dtype): the
  // outliers as codes of their row's 8-bit grid (an affine one: the
  // reference's zero point is no integer multiple of its step), the others
  // xnor signs around mean 0 with the binary scale. Needs the outliers as
  // the 8-bit pass left them: not trained, no weight decay (which moves them).
  pack::PackedLinears packed_linears();
  bool unties_head() const { return unties_head_; }
  int64_t source_parameters() const { return model_.parameter_count(); }

  int64_t binarized_linears() const { return static_cast<int64_t>(linears_.size()); }
  int64_t weights() const;
  int64_t outliers() const;
  // rows + 1 summed over the Linears: a CSR layout's row pointers.
  int64_t row_pointers() const;
  // Weights whose sign the 8-bit pass changed (the reference's wrap, see binarized_linear.h).
  int64_t sign_flips() const { return sign_flips_; }

 private:
  struct Linear {
    std::string weight_name, bias_name;  // bias_name empty without a bias
    at::Tensor latent, bias, outliers, scale;
    EightBitGrid grid;  // the 8-bit pass's, from the original weights
    at::Tensor made, made_scale;  // the weight as computed with, without autograd, until set_training, and its scale
    at::ScalarType dtype = at::kFloat;  // the checkpoint's (a tied head's: the embedding's)
    bool head = false;
  };
  at::Tensor tensor_for(const std::string& name);
  at::Tensor weight_of(Linear& linear);

  model::DecoderModel& model_;
  BinarizationOptions options_;
  std::vector<Linear> linears_;
  std::map<std::string, std::pair<size_t, bool>> by_name_;  // name -> (linear, is the bias)
  std::vector<std::string> parameter_names_;
  bool training_ = false;
  bool unties_head_ = false;
  int64_t sign_flips_ = 0;
};

// The trained model as a folder (pack::save_model_folder): fake-quant
// (checkpoint_tensors in model.safetensors) or `packed` (packed_linears,
// `settings` in the metadata); a binarized tied head is saved as
// lm_head.weight with tie_word_embeddings false. `report` gets the sizes and
// is saved in the folder. Returns the lines to print.
std::string save_trained_model(BinarizedModel& binarized, const io::Checkpoint& source, const std::filesystem::path& dir,
                               bool packed, const nlohmann::json& settings, nlohmann::json& report);

}  // namespace pbllm::qat
