#include "pbllm/model/opt.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/relu.h>

#include "pbllm/core/check.h"

namespace pbllm::model {
namespace {

// OPT's learned position table has two extra rows in front (fairseq's padding
// offset): position p of the sequence reads row p + 2.
constexpr int64_t kPositionOffset = 2;
constexpr double kLayerNormEps = 1e-5;

}  // namespace

OptModel::OptModel(ModelConfig config, std::map<std::string, at::Tensor> weights, const at::Device& device,
                   const std::string& source)
    : DecoderModel(std::move(config), std::move(weights), device, source) {
  // Checkpoints saved from OPTForCausalLM say "model.decoder.", the original
  // fairseq-converted ones "decoder.".
  decoder_ = weights_.count("decoder.embed_tokens.weight") ? "decoder." : "model.decoder.";
  layers_prefix_ = decoder_ + "layers.";
  const ModelConfig& c = config_;
  const int64_t h = c.hidden_size, e = c.word_embed_proj_dim;
  require_weight(decoder_ + "embed_tokens.weight", {c.vocab_size, e});
  require_weight(decoder_ + "embed_positions.weight", {c.max_position_embeddings + kPositionOffset, h});
  if (e != h) {
    require_weight(decoder_ + "project_in.weight", {h, e});
    require_weight(decoder_ + "project_out.weight", {e, h});
  }
  std::vector<std::pair<std::string, std::vector<int64_t>>> layer_tensors = {
      {"self_attn.q_proj.weight", {h, h}}, {"self_attn.k_proj.weight", {h, h}},
      {"self_attn.v_proj.weight", {h, h}}, {"self_attn.out_proj.weight", {h, h}},
      {"fc1.weight", {c.intermediate_size, h}}, {"fc2.weight", {h, c.intermediate_size}}};
  if (c.enable_bias)
    for (const char* name : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc2"})
      layer_tensors.push_back({str_cat(name, ".bias"), {h}});
  if (c.enable_bias) layer_tensors.push_back({"fc1.bias", {c.intermediate_size}});
  if (c.layer_norm_elementwise_affine)
    for (const char* name : {"self_attn_layer_norm", "final_layer_norm"}) {
      layer_tensors.push_back({str_cat(name, ".weight"), {h}});
      layer_tensors.push_back({str_cat(name, ".bias"), {h}});
    }
  require_layer_weights(layer_tensors);
  if (!weights_.count("lm_head.weight")) {
    PBLLM_CHECK(c.tie_word_embeddings, source, ": lm_head.weight is missing and tie_word_embeddings is false");
  } else {
    require_weight("lm_head.weight", {c.vocab_size, e});
  }
}

std::vector<std::vector<std::string>> OptModel::linear_input_groups() const {
  return {{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, {"self_attn.out_proj"}, {"fc1"}, {"fc2"}};
}

at::Tensor OptModel::layer_norm(const at::Tensor& x, const std::string& prefix) const {
  return at::layer_norm(x, {config_.hidden_size}, optional_param(prefix + ".weight"), optional_param(prefix + ".bias"),
                        kLayerNormEps);
}

at::Tensor OptModel::embed(const at::Tensor& ids, int64_t first_position) const {
  const int64_t length = ids.size(1), end = first_position + length;
  PBLLM_CHECK(end <= config_.max_position_embeddings, "sequence of ", end, " tokens is longer than the ",
              config_.max_position_embeddings, " positions this OPT model has");
  at::Tensor hidden = embedding_rows(decoder_ + "embed_tokens.weight", ids);
  if (config_.word_embed_proj_dim != config_.hidden_size)
    hidden = outer_linear(decoder_ + "project_in.weight", hidden);
  const at::Tensor rows = at::arange(first_position + kPositionOffset, end + kPositionOffset, at::kLong).unsqueeze(0);
  return hidden + embedding_rows(decoder_ + "embed_positions.weight", rows);
}

at::Tensor OptModel::layer(int64_t index, const at::Tensor& hidden, LinearInputObserver* observer,
                           KvCache* cache) const {
  const std::string prefix = layer_prefix(index);
  const bool pre_norm = config_.do_layer_norm_before;
  const int64_t heads = config_.num_heads;

  at::Tensor x = pre_norm ? layer_norm(hidden, prefix + "self_attn_layer_norm") : hidden;
  const auto qkv =
      linears_on_shared_input(index, {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, x, observer);
  const at::Tensor attended =
      attention(index, split_heads(qkv[0], heads), split_heads(qkv[1], heads), split_heads(qkv[2], heads), cache);
  at::Tensor h = hidden + linear(index, "self_attn.out_proj", attended, observer);
  if (!pre_norm) h = layer_norm(h, prefix + "self_attn_layer_norm");

  x = pre_norm ? layer_norm(h, prefix + "final_layer_norm") : h;
  x = linear(index, "fc1", x, observer);
  x = config_.activation == "relu" ? at::relu(x) : at::gelu(x);
  h = h + linear(index, "fc2", x, observer);
  if (!pre_norm) h = layer_norm(h, prefix + "final_layer_norm");
  return h;
}

at::Tensor OptModel::head_input(const at::Tensor& hidden) const {
  at::Tensor x = hidden;
  if (config_.do_layer_norm_before && !config_.remove_final_layer_norm)
    x = layer_norm(x, decoder_ + "final_layer_norm");
  if (config_.word_embed_proj_dim != config_.hidden_size) x = outer_linear(decoder_ + "project_out.weight", x);
  return x;
}

std::vector<std::string> OptModel::outer_linear_weight_names() const {
  std::vector<std::string> names;
  for (const char* linear : {"project_in.weight", "project_out.weight"})
    if (weights_.count(decoder_ + linear)) names.push_back(decoder_ + linear);
  return names;
}

std::string OptModel::head_weight_name() const {
  return weights_.count("lm_head.weight") ? "lm_head.weight" : decoder_ + "embed_tokens.weight";
}

}  // namespace pbllm::model
