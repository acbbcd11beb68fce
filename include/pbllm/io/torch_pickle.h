// pytorch_model.bin: the zip archive that torch.save writes (a pickle of an
// OrderedDict of tensors plus one file per storage). LibTorch's unpickler reads it.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

namespace pbllm::io {

// Loads a state dict saved with torch.save (zip format). Every value must be a
// tensor; errors name the file.
std::vector<std::pair<std::string, at::Tensor>> load_torch_state_dict(const std::string& path);

}  // namespace pbllm::io
