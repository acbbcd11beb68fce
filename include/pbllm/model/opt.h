// OPT (facebook/opt-*): learned positions offset by 2, pre- or post-LayerNorm
// layers, ReLU MLP, optional project_in / project_out (OPT-350m).
#pragma once

#include "pbllm/model/decoder.h"

namespace pbllm::model {

class OptModel : public DecoderModel {
 public:
  // `source` names the weights file in errors about missing tensors.
  OptModel(ModelConfig config, std::map<std::string, at::Tensor> weights, const at::Device& device,
           const std::string& source);

  at::Tensor embed(const at::Tensor& ids, int64_t first_position) const override;
  at::Tensor layer(int64_t index, const at::Tensor& hidden, LinearInputObserver* observer,
                   KvCache* cache) const override;
  at::Tensor head_input(const at::Tensor& hidden) const override;
  std::string head_weight_name() const override;
  std::vector<std::vector<std::string>> linear_input_groups() const override;
  std::vector<std::string> outer_linear_weight_names() const override;

 private:
  at::Tensor layer_norm(const at::Tensor& x, const std::string& prefix) const;
  std::string decoder_;  // "model.decoder." or "decoder." (older checkpoints)
};

}  // namespace pbllm::model
