// A Hugging Face checkpoint directory: config.json plus weights in one of the
// layouts save_pretrained writes (single or sharded safetensors, single or
// sharded pytorch_model.bin), or pbllm's packed PB checkpoint (model.pb.safetensors,
// read as safetensors here; pack/ decodes its Linears). safetensors tensors stay
// memory-mapped until used.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "pbllm/core/check.h"
#include "pbllm/io/safetensors.h"

namespace pbllm::io {

class Checkpoint {
 public:
  // MODEL is a directory or an ORG/NAME id in the local Hugging Face cache.
  static Checkpoint open(const std::string& model);

  const std::filesystem::path& dir() const { return dir_; }
  const nlohmann::json& config() const { return config_; }
  // The weights file (or index) the tensors come from, e.g. "model.safetensors".
  const std::string& weights_file() const { return weights_file_; }

  // Every file the weights come from (the shards of a sharded checkpoint).
  const std::vector<std::filesystem::path>& weight_files() const { return weight_files_; }
  // The safetensors files, mapped (empty for .bin checkpoints).
  const std::vector<std::shared_ptr<SafetensorsFile>>& safetensors_files() const { return mapped_files_; }

  std::vector<std::string> tensor_names() const;
  bool has_tensor(const std::string& name) const;
  // A CPU tensor in the checkpoint's dtype; a missing name throws, naming the folder.
  at::Tensor tensor(const std::string& name) const;

 private:
  void add_safetensors(const std::filesystem::path& file, const std::vector<std::string>* expected_names);
  void add_torch_bin(const std::filesystem::path& file, const std::vector<std::string>* expected_names);
  void add_sharded(const std::filesystem::path& index, bool safetensors);

  std::filesystem::path dir_;
  nlohmann::json config_;
  std::string weights_file_;
  std::vector<std::filesystem::path> weight_files_;
  std::vector<std::shared_ptr<SafetensorsFile>> mapped_files_;
  std::unordered_map<std::string, const SafetensorsFile*> mapped_;  // name -> the file that holds it
  std::unordered_map<std::string, at::Tensor> loaded_;              // tensors read from .bin files
};

// Reads a JSON file; errors name the file and the parse problem.
nlohmann::json read_json_file(const std::filesystem::path& path);

// `value` as the integer type T: a float (whose conversion could be
// undefined), a string or a number outside T's range throws naming `what`.
template <typename T>
T json_integer(const nlohmann::json& value, const std::string& what) {
  const bool fits = value.is_number_integer() &&
                    (value.is_number_unsigned()
                         ? value.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                         : value.get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
                               value.get<int64_t>() <= static_cast<int64_t>(std::numeric_limits<T>::max()));
  PBLLM_CHECK(fits, what, " is ", value.dump().substr(0, 40), ", not an integer in range");
  return static_cast<T>(value.is_number_unsigned() ? static_cast<int64_t>(value.get<uint64_t>()) : value.get<int64_t>());
}

// Runs `read`, which walks a JSON document read from `file` with .at() and
// .get<T>(): a missing key or a value of the wrong type becomes one
// pbllm::Error naming the file and the key or type.
template <typename Read>
auto reading_json(const std::filesystem::path& file, Read&& read) -> decltype(read()) {
  try {
    return read();
  } catch (const nlohmann::json::exception& error) {
    throw Error(str_cat(file.string(), ": unexpected content (", error.what(), ")"));
  }
}

}  // namespace pbllm::io
