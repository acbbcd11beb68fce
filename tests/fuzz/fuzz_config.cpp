// config.json: JSON parsing, then the model's sizes and options checked.
#include "fuzz_input.h"
#include "pbllm/io/checkpoint.h"
#include "pbllm/model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return pbllm::fuzz::accept_or_reject([&] {
    const auto path = pbllm::fuzz::input_file(data, size, "config.json");
    pbllm::model::ModelConfig::from_json(pbllm::io::read_json_file(path), path.string());
  });
}
