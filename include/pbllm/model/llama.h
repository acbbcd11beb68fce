// LLaMA: RMSNorm, rotary positions (rotate-half layout, as Hugging Face stores
// q/k), grouped-query attention, SiLU-gated MLP.
#pragma once

#include "pbllm/model/decoder.h"

namespace pbllm::model {

class LlamaModel : public DecoderModel {
 public:
  LlamaModel(ModelConfig config, std::map<std::string, at::Tensor> weights, const at::Device& device,
             const std::string& source);

  at::Tensor embed(const at::Tensor& ids, int64_t first_position) const override;
  at::Tensor layer(int64_t index, const at::Tensor& hidden, LinearInputObserver* observer,
                   KvCache* cache) const override;
  at::Tensor head_input(const at::Tensor& hidden) const override;
  std::string head_weight_name() const override;
  std::vector<std::vector<std::string>> linear_input_groups() const override;

 private:
  at::Tensor rms_norm(const at::Tensor& x, const std::string& weight_name) const;
  // q or k [b, heads, t, d] rotated by position.
  // Rotary positions first_position, first_position + 1, ... along x's dim 2.
  at::Tensor apply_rotary(const at::Tensor& x, int64_t first_position) const;
};

}  // namespace pbllm::model
