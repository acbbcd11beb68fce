#include "pbllm/model/llama.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/outer.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/rsqrt.h>
#include <ATen/ops/silu.h>

#include "pbllm/core/check.h"

namespace pbllm::model {
namespace {

const std::string kModel = "model.";

// [.., d] -> [.., d] with halves swapped and the first negated: (-x2, x1).
at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

}  // namespace

LlamaModel::LlamaModel(ModelConfig config, std::map<std::string, at::Tensor> weights, const at::Device& device,
                       const std::string& source)
    : DecoderModel(std::move(config), std::move(weights), device, source) {
  layers_prefix_ = kModel + "layers.";
  const ModelConfig& c = config_;
  const int64_t h = c.hidden_size, q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  const int64_t f = c.intermediate_size;
  PBLLM_CHECK(c.head_dim % 2 == 0, source, ": head_dim ", c.head_dim, " must be even for rotary positions");
  require_weight(kModel + "embed_tokens.weight", {c.vocab_size, h});
  require_weight(kModel + "norm.weight", {h});
  std::vector<std::pair<std::string, std::vector<int64_t>>> layer_tensors = {
      {"self_attn.q_proj.weight", {q, h}}, {"self_attn.k_proj.weight", {kv, h}},
      {"self_attn.v_proj.weight", {kv, h}}, {"self_attn.o_proj.weight", {h, q}},
      {"mlp.gate_proj.weight", {f, h}},     {"mlp.up_proj.weight", {f, h}},
      {"mlp.down_proj.weight", {h, f}},     {"input_layernorm.weight", {h}},
      {"post_attention_layernorm.weight", {h}}};
  if (c.attention_bias) {
    layer_tensors.push_back({"self_attn.q_proj.bias", {q}});
    layer_tensors.push_back({"self_attn.k_proj.bias", {kv}});
    layer_tensors.push_back({"self_attn.v_proj.bias", {kv}});
    layer_tensors.push_back({"self_attn.o_proj.bias", {h}});
  }
  if (c.mlp_bias) {
    layer_tensors.push_back({"mlp.gate_proj.bias", {f}});
    layer_tensors.push_back({"mlp.up_proj.bias", {f}});
    layer_tensors.push_back({"mlp.down_proj.bias", {h}});
  }
  require_layer_weights(layer_tensors);
  if (weights_.count("lm_head.weight")) {
    require_weight("lm_head.weight", {c.vocab_size, h});
  } else {
    PBLLM_CHECK(c.tie_word_embeddings, source, ": lm_head.weight is missing and tie_word_embeddings is false");
  }
}

std::vector<std::vector<std::string>> LlamaModel::linear_input_groups() const {
  return {{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"},
          {"self_attn.o_proj"},
          {"mlp.gate_proj", "mlp.up_proj"},
          {"mlp.down_proj"}};
}

at::Tensor LlamaModel::rms_norm(const at::Tensor& x, const std::string& weight_name) const {
  // As transformers: normalise in float32, cast back, then scale.
  const at::Tensor x32 = x.to(at::kFloat);
  const at::Tensor normalized = x32 * at::rsqrt(x32.pow(2).mean(-1, true) + config_.rms_norm_eps);
  return param(weight_name) * normalized.to(x.scalar_type());
}

at::Tensor LlamaModel::apply_rotary(const at::Tensor& x, int64_t first_position) const {
  // inv_freq and the angles in float32, as transformers computes them.
  const int64_t dim = config_.head_dim;
  const auto float_options = at::TensorOptions().dtype(at::kFloat).device(x.device());
  const at::Tensor exponents = at::arange(0, dim, 2, float_options.dtype(at::kLong)).to(at::kFloat) / dim;
  const at::Tensor inv_freq = 1.0 / at::pow(config_.rope_theta, exponents);
  const at::Tensor positions = at::arange(first_position, first_position + x.size(2), float_options.dtype(at::kLong));
  const at::Tensor angles = at::outer(positions.to(at::kFloat), inv_freq);
  const at::Tensor both = at::cat({angles, angles}, -1);
  const at::Tensor cos = both.cos().to(x.scalar_type()), sin = both.sin().to(x.scalar_type());
  return x * cos + rotate_half(x) * sin;
}

at::Tensor LlamaModel::embed(const at::Tensor& ids, int64_t) const {
  return embedding_rows(kModel + "embed_tokens.weight", ids);
}

at::Tensor LlamaModel::layer(int64_t index, const at::Tensor& hidden, LinearInputObserver* observer,
                             KvCache* cache) const {
  const int64_t first_position = cache ? cache->positions : 0;
  const std::string prefix = layer_prefix(index);
  at::Tensor x = rms_norm(hidden, prefix + "input_layernorm.weight");
  const auto qkv =
      linears_on_shared_input(index, {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, x, observer);
  const at::Tensor q = apply_rotary(split_heads(qkv[0], config_.num_heads), first_position);
  const at::Tensor k = apply_rotary(split_heads(qkv[1], config_.num_kv_heads), first_position);
  const at::Tensor v = split_heads(qkv[2], config_.num_kv_heads);
  const at::Tensor h = hidden + linear(index, "self_attn.o_proj", attention(index, q, k, v, cache), observer);

  x = rms_norm(h, prefix + "post_attention_layernorm.weight");
  const auto gate_up = linears_on_shared_input(index, {"mlp.gate_proj", "mlp.up_proj"}, x, observer);
  return h + linear(index, "mlp.down_proj", at::silu(gate_up[0]) * gate_up[1], observer);
}

at::Tensor LlamaModel::head_input(const at::Tensor& hidden) const { return rms_norm(hidden, kModel + "norm.weight"); }

std::string LlamaModel::head_weight_name() const {
  return weights_.count("lm_head.weight") ? "lm_head.weight" : kModel + "embed_tokens.weight";
}

}  // namespace pbllm::model
