// The pytorch_model.bin reader: the zip container and the pickle program
// that names the tensors and their storages.
#include "fuzz_input.h"
#include "pbllm/io/torch_pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return pbllm::fuzz::accept_or_reject([&] {
    for (const auto& [name, tensor] :
         pbllm::io::load_torch_state_dict(pbllm::fuzz::input_file(data, size, "pytorch_model.bin").string()))
      tensor.sum();
  });
}
