// The fields of a Hugging Face config.json that the OPT and LLaMA forwards need,
// with transformers' defaults for the ones a config may leave out.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace pbllm::model {

enum class Architecture { opt, llama };

struct ModelConfig {
  Architecture architecture = Architecture::llama;
  std::string model_type;  // as written in config.json
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // OPT: ffn_dim
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;  // == num_heads for OPT
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = true;
  std::string torch_dtype = "float32";

  // LLaMA
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool attention_bias = false;
  bool mlp_bias = false;

  // OPT
  bool do_layer_norm_before = true;
  int64_t word_embed_proj_dim = 0;  // != hidden_size: project_in / project_out exist (OPT-350m)
  bool enable_bias = true;
  bool layer_norm_elementwise_affine = true;
  bool remove_final_layer_norm = false;
  std::string activation = "relu";

  // Parses and checks config.json (`source` names the file in errors):
  // unsupported model_type, missing or inconsistent sizes, unsupported options.
  static ModelConfig from_json(const nlohmann::json& json, const std::string& source);

  // Positions the model was trained on; the calibration / evaluation seqlen
  // default is min(2048, this).
  int64_t context_length() const { return max_position_embeddings; }
};

}  // namespace pbllm::model
