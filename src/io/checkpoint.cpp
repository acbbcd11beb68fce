#include "pbllm/io/checkpoint.h"

#include <algorithm>
#include <fstream>
#include <map>

#include "pbllm/core/check.h"
#include "pbllm/io/model_path.h"
#include "pbllm/io/torch_pickle.h"

namespace pbllm::io {
namespace fs = std::filesystem;

nlohmann::json read_json_file(const fs::path& path) {
  std::ifstream in(path);
  PBLLM_CHECK(in.good(), path.string(), ": cannot open");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& error) {
    throw Error(str_cat(path.string(), ": bad JSON (", error.what(), ")"));
  }
}

namespace {

void check_listed_names_present(const fs::path& file, const std::vector<std::string>* expected,
                                const std::function<bool(const std::string&)>& has) {
  if (expected == nullptr) return;
  for (const std::string& name : *expected)
    PBLLM_CHECK(has(name), file.string(), ": the index lists tensor '", name, "' in this shard but it is missing");
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& model) {
  Checkpoint checkpoint;
  checkpoint.dir_ = resolve_model_path(model);
  checkpoint.config_ = read_json_file(checkpoint.dir_ / "config.json");
  PBLLM_CHECK(checkpoint.config_.is_object(), (checkpoint.dir_ / "config.json").string(), ": not a JSON object");
  const fs::path& dir = checkpoint.dir_;
  // A folder with both the plain and the packed file is ambiguous (one of
  // them is stale): say so rather than pick one.
  PBLLM_CHECK(!(fs::exists(dir / "model.safetensors") && fs::exists(dir / "model.pb.safetensors")), dir.string(),
              ": holds both model.safetensors and model.pb.safetensors; remove the one that is not the model");
  // The order transformers prefers when several layouts are present.
  if (fs::exists(dir / "model.safetensors")) {
    checkpoint.weights_file_ = "model.safetensors";
    checkpoint.add_safetensors(dir / "model.safetensors", nullptr);
  } else if (fs::exists(dir / "model.pb.safetensors")) {
    checkpoint.weights_file_ = "model.pb.safetensors";
    checkpoint.add_safetensors(dir / "model.pb.safetensors", nullptr);
  } else if (fs::exists(dir / "model.safetensors.index.json")) {
    checkpoint.weights_file_ = "model.safetensors.index.json";
    checkpoint.add_sharded(dir / "model.safetensors.index.json", true);
  } else if (fs::exists(dir / "pytorch_model.bin")) {
    checkpoint.weights_file_ = "pytorch_model.bin";
    checkpoint.add_torch_bin(dir / "pytorch_model.bin", nullptr);
  } else if (fs::exists(dir / "pytorch_model.bin.index.json")) {
    checkpoint.weights_file_ = "pytorch_model.bin.index.json";
    checkpoint.add_sharded(dir / "pytorch_model.bin.index.json", false);
  } else {
    throw Error(str_cat(dir.string(), ": no weights (looked for model.safetensors, model.pb.safetensors, model.safetensors.index.json, "
                                      "pytorch_model.bin, pytorch_model.bin.index.json)"));
  }
  return checkpoint;
}

void Checkpoint::add_safetensors(const fs::path& file, const std::vector<std::string>* expected_names) {
  weight_files_.push_back(file);
  auto mapped = std::make_shared<SafetensorsFile>(file.string());
  check_listed_names_present(file, expected_names, [&](const std::string& name) { return mapped->contains(name); });
  for (const std::string& name : mapped->names()) mapped_[name] = mapped.get();
  mapped_files_.push_back(std::move(mapped));
}

void Checkpoint::add_torch_bin(const fs::path& file, const std::vector<std::string>* expected_names) {
  weight_files_.push_back(file);
  std::unordered_map<std::string, at::Tensor> shard;
  for (auto& [name, tensor] : load_torch_state_dict(file.string())) shard[name] = std::move(tensor);
  check_listed_names_present(file, expected_names, [&](const std::string& name) { return shard.count(name) > 0; });
  for (auto& [name, tensor] : shard) loaded_[name] = std::move(tensor);
}

void Checkpoint::add_sharded(const fs::path& index, bool safetensors) {
  const nlohmann::json json = read_json_file(index);
  PBLLM_CHECK(json.is_object() && json.contains("weight_map") && json["weight_map"].is_object(), index.string(),
              ": no \"weight_map\" object");
  std::map<std::string, std::vector<std::string>> names_by_shard;
  for (const auto& [name, shard] : json["weight_map"].items()) {
    PBLLM_CHECK(shard.is_string(), index.string(), ": the shard of '", name, "' is not a file name");
    names_by_shard[shard.get<std::string>()].push_back(name);
  }
  for (const auto& [shard, names] : names_by_shard) {
    const fs::path file = index.parent_path() / shard;
    PBLLM_CHECK(fs::exists(file), index.string(), ": shard ", shard, " is missing from ", dir_.string());
    if (safetensors) {
      add_safetensors(file, &names);
    } else {
      add_torch_bin(file, &names);
    }
  }
}

std::vector<std::string> Checkpoint::tensor_names() const {
  std::vector<std::string> names;
  for (const auto& [name, file] : mapped_) names.push_back(name);
  for (const auto& [name, tensor] : loaded_) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

bool Checkpoint::has_tensor(const std::string& name) const { return mapped_.count(name) || loaded_.count(name); }

at::Tensor Checkpoint::tensor(const std::string& name) const {
  if (auto found = mapped_.find(name); found != mapped_.end()) return found->second->tensor(name);
  if (auto found = loaded_.find(name); found != loaded_.end()) return found->second;
  throw Error(str_cat(dir_.string(), ": tensor '", name, "' is missing from ", weights_file_));
}

}  // namespace pbllm::io
