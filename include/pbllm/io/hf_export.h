// Writing a Hugging Face checkpoint folder that transformers and pbllm load
// as they are: config.json and the tokenizer files copied from the source
// folder, the tensors in model.safetensors, plus extra files (report.json).
// The folder is built under "<dir>.tmp.<pid>" and renamed into place, so an
// interrupted run never leaves a half-written checkpoint under the final name.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "pbllm/io/safetensors.h"

namespace pbllm::io {

void save_hf_directory(const std::filesystem::path& source, const std::filesystem::path& dir,
                       const NamedTensors& tensors, const std::map<std::string, std::string>& extra_files);

}  // namespace pbllm::io
