// Where a MODEL argument lives: a local directory in Hugging Face layout, or
// an id ORG/NAME in the local Hugging Face cache. Nothing is downloaded.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace pbllm::io {

// The hub cache folders in the order Hugging Face uses them:
// $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub.
std::filesystem::path hugging_face_hub_cache();

// Returns the directory holding config.json. Not found: one line naming
// every place looked at.
std::filesystem::path resolve_model_path(const std::string& model);

}  // namespace pbllm::io
