// The packed PB checkpoint reader (pack/packed_checkpoint.h): the metadata of
// each listed Linear, its tensors' checks, then what a tool does with a
// Linear that passed them: decode it, and build and run its packed GEMV.
#include <ATen/ops/ones.h>

#include "fuzz_input.h"
#include "pbllm/io/safetensors.h"
#include "pbllm/pack/packed_checkpoint.h"
#include "pbllm/pack/packed_gemv.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return pbllm::fuzz::accept_or_reject([&] {
    const pbllm::io::SafetensorsFile file(pbllm::fuzz::input_file(data, size, "model.pb.safetensors").string());
    for (const auto& [name, linear] : pbllm::pack::read_packed_linears(file)) {
      // A valid prune Linear of any shape is a few bytes: decoding a huge one
      // is an allocation, not a reader's finding.
      if (linear->weights() > (int64_t{1} << 22)) continue;
      (void)pbllm::pack::decode_linear(*linear);
      if (pbllm::pack::PackedGemv::supports(*linear))
        (void)pbllm::pack::PackedGemv (*linear)(at::ones({linear->columns}));
    }
  });
}
