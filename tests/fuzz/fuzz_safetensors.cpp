// The safetensors reader: header length, JSON header, dtypes, shapes, offsets,
// then every tensor read (a tensor that passed the checks must be readable).
#include "fuzz_input.h"
#include "pbllm/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return pbllm::fuzz::accept_or_reject([&] {
    const pbllm::io::SafetensorsFile file(pbllm::fuzz::input_file(data, size, "model.safetensors").string());
    for (const std::string& name : file.names()) file.tensor(name).sum();
  });
}
