#include "pbllm/model/config.h"

#include <type_traits>

#include "pbllm/core/check.h"
#include "pbllm/io/checkpoint.h"

namespace pbllm::model {
namespace {

// Reads json[key] as T, `fallback` when absent or null; a wrong type names the key.
template <typename T>
T field(const nlohmann::json& json, const std::string& source, const char* key, T fallback) {
  if (!json.contains(key) || json[key].is_null()) return fallback;
  const nlohmann::json& value = json[key];
  // get<int64_t>() of 1e300 is undefined behaviour (found by the fuzzer): sizes must be JSON integers.
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>)
    return io::json_integer<T>(value, str_cat(source, ": \"", key, "\""));
  try {
    return value.get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error(str_cat(source, ": \"", key, "\" has an unexpected value ", json[key].dump()));
  }
}

template <typename T>
T required(const nlohmann::json& json, const std::string& source, const char* key) {
  PBLLM_CHECK(json.contains(key) && !json[key].is_null(), source, ": missing \"", key, "\"");
  return field<T>(json, source, key, T{});
}

void parse_llama(ModelConfig& c, const nlohmann::json& j, const std::string& source) {
  c.intermediate_size = required<int64_t>(j, source, "intermediate_size");
  c.num_kv_heads = field<int64_t>(j, source, "num_key_value_heads", c.num_heads);
  c.head_dim = field<int64_t>(j, source, "head_dim", c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
  c.rms_norm_eps = field<double>(j, source, "rms_norm_eps", 1e-6);
  c.rope_theta = field<double>(j, source, "rope_theta", 10000.0);
  c.attention_bias = field<bool>(j, source, "attention_bias", false);
  c.mlp_bias = field<bool>(j, source, "mlp_bias", false);
  c.tie_word_embeddings = field<bool>(j, source, "tie_word_embeddings", false);
  c.max_position_embeddings = field<int64_t>(j, source, "max_position_embeddings", 2048);
  const std::string act = field<std::string>(j, source, "hidden_act", "silu");
  PBLLM_CHECK(act == "silu", source, ": hidden_act '", act, "' is not supported (LLaMA uses silu)");
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const std::string type = field<std::string>(j["rope_scaling"], source, "rope_type",
                                                field<std::string>(j["rope_scaling"], source, "type", ""));
    PBLLM_CHECK(type == "default", source, ": rope_scaling of type '", type,
                "' is not supported; only unscaled rotary positions are");
  }
}

void parse_opt(ModelConfig& c, const nlohmann::json& j, const std::string& source) {
  c.intermediate_size = required<int64_t>(j, source, "ffn_dim");
  c.num_kv_heads = c.num_heads;
  c.head_dim = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
  c.do_layer_norm_before = field<bool>(j, source, "do_layer_norm_before", true);
  c.word_embed_proj_dim = field<int64_t>(j, source, "word_embed_proj_dim", c.hidden_size);
  c.enable_bias = field<bool>(j, source, "enable_bias", true);
  c.layer_norm_elementwise_affine = field<bool>(j, source, "layer_norm_elementwise_affine", true);
  c.remove_final_layer_norm = field<bool>(j, source, "_remove_final_layer_norm", false);
  c.tie_word_embeddings = field<bool>(j, source, "tie_word_embeddings", true);
  c.max_position_embeddings = field<int64_t>(j, source, "max_position_embeddings", 2048);
  c.activation = field<std::string>(j, source, "activation_function", "relu");
  PBLLM_CHECK(c.activation == "relu" || c.activation == "gelu", source, ": activation_function '", c.activation,
              "' is not supported (relu, gelu)");
}

}  // namespace

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& source) {
  PBLLM_CHECK(j.is_object(), source, ": not a JSON object");
  ModelConfig c;
  c.model_type = required<std::string>(j, source, "model_type");
  c.vocab_size = required<int64_t>(j, source, "vocab_size");
  c.hidden_size = required<int64_t>(j, source, "hidden_size");
  c.num_layers = required<int64_t>(j, source, "num_hidden_layers");
  c.num_heads = required<int64_t>(j, source, "num_attention_heads");
  c.torch_dtype = field<std::string>(j, source, "torch_dtype", field<std::string>(j, source, "dtype", "float32"));
  if (c.model_type == "llama") {
    c.architecture = Architecture::llama;
    parse_llama(c, j, source);
  } else if (c.model_type == "opt") {
    c.architecture = Architecture::opt;
    parse_opt(c, j, source);
  } else {
    throw Error(str_cat(source, ": model_type '", c.model_type, "' is not supported (opt, llama)"));
  }
  PBLLM_CHECK(c.vocab_size > 0 && c.hidden_size > 0 && c.num_layers > 0 && c.num_heads > 0 && c.num_kv_heads > 0 &&
                  c.intermediate_size > 0 && c.head_dim > 0 && c.max_position_embeddings > 0,
              source, ": sizes must be positive");
  PBLLM_CHECK(c.num_heads % c.num_kv_heads == 0, source, ": num_attention_heads ", c.num_heads,
              " is not a multiple of num_key_value_heads ", c.num_kv_heads);
  PBLLM_CHECK(c.architecture == Architecture::llama || c.hidden_size % c.num_heads == 0, source, ": hidden_size ",
              c.hidden_size, " is not a multiple of num_attention_heads ", c.num_heads);
  return c;
}

}  // namespace pbllm::model
