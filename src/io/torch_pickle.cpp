#include "pbllm/io/torch_pickle.h"

#include <torch/csrc/jit/serialization/pickle.h>

#include <fstream>
#include <iterator>

#include "pbllm/core/check.h"

namespace pbllm::io {

std::vector<std::pair<std::string, at::Tensor>> load_torch_state_dict(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  PBLLM_CHECK(in.good(), path, ": cannot open");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // torch.save's zip archives start with a local file header "PK\x03\x04";
  // the legacy (pre-1.6) format is a bare pickle, which LibTorch cannot read.
  PBLLM_CHECK(bytes.size() >= 4 && bytes[0] == 'P' && bytes[1] == 'K', path,
              ": not a torch.save zip archive (legacy .bin format? re-save it with torch>=1.6 or convert to "
              "safetensors)");
  c10::IValue value;
  try {
    value = torch::jit::pickle_load(bytes);
  } catch (const std::exception& error) {
    throw Error(str_cat(path, ": cannot unpickle (", std::string(error.what()).substr(0, 300), ")"));
  }
  PBLLM_CHECK(value.isGenericDict(), path, ": holds a ", value.tagKind(), ", not a state dict");
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& item : value.toGenericDict()) {
    PBLLM_CHECK(item.key().isString(), path, ": a state-dict key is not a string");
    PBLLM_CHECK(item.value().isTensor(), path, ": '", item.key().toStringRef(), "' is not a tensor");
    tensors.emplace_back(item.key().toStringRef(), item.value().toTensor());
  }
  return tensors;
}

}  // namespace pbllm::io
