// The layer-by-layer driver: calibration hidden states through embed, then
// for each decoder layer: observe every selected Linear's input (Hessians with
// the layer's original weights), quantize those Linears with GPTQ-PB, rerun
// the layer with the quantized weights to get the next layer's inputs.
#pragma once

#include <cstdint>
#include <functional>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pbllm/model/decoder.h"
#include "pbllm/quant/gptq_pb.h"

namespace pbllm::quant {

// Which Linears are quantized, as the reference's --minlayer / --maxlayer /
// --quant_only / --invert: (minlayer <= layer < maxlayer and the name contains
// quant_only), negated by invert.
struct LinearSelection {
  int64_t minlayer = -1;
  int64_t maxlayer = 1000;
  std::string quant_only;
  bool invert = false;
  bool selected(int64_t layer, const std::string& linear) const;
};

// How many of `model`'s Linears `selection` picks; none is an error naming the flags and the names.
int64_t require_selected_linears(const model::DecoderModel& model, const LinearSelection& selection);

// --calibration-dtype auto: a 16-bit checkpoint's activations are held in its
// own dtype (layer 0's first Linear's; the reference computes such a model in
// it throughout) where the forward computes in float32; otherwise in the
// compute dtype (at::ScalarType::Undefined, GptqPbOptions::calibration_dtype).
at::ScalarType auto_calibration_dtype(const model::DecoderModel& model);

struct LinearReport {
  int64_t layer = 0;
  std::string name;  // e.g. "self_attn.q_proj"
  int64_t rows = 0, columns = 0;
  double loss = 0;
  double salient_fraction = 0;
  double seconds = 0;
  double percdamp_used = 0;
  int damping_retries = 0;
  bool kept = false;  // read back from the state folder of an interrupted run, not quantized now
};

class RunState;

// Quantizes `model` in place (its weights replaced by the quantized values in
// their original dtype); `on_linear` is called after each Linear. With
// `packed`, each quantized Linear is also encoded there (by weight name) for
// the packed PB checkpoint. With `state`, each finished layer is kept there,
// and the layers it already holds are read back instead of quantized again
// (their inputs recomputed through them).
std::vector<LinearReport> quantize_layers(model::DecoderModel& model,
                                          const std::vector<std::vector<int32_t>>& calibration_windows,
                                          const GptqPbOptions& options, const LinearSelection& selection,
                                          const std::function<void(const LinearReport&)>& on_linear = {},
                                          pack::PackedLinears* packed = nullptr, RunState* state = nullptr);

// What the packed format needs of one GPTQ-PB result.
pack::QuantizedLinear quantized_linear(const GptqPbResult& result, const GptqPbOptions& options,
                                       at::ScalarType checkpoint_dtype);

// [{"layer", "name", "shape", "loss", "salient_fraction", "seconds", "percdamp", "damping_retries"}, ...]
nlohmann::json linear_reports_json(const std::vector<LinearReport>& reports);
// The inverse (for the state folder); a missing or mistyped key throws.
std::vector<LinearReport> linear_reports_from_json(const nlohmann::json& list);

}  // namespace pbllm::quant
