// tokenizer.model: pbllm's own protobuf reader of SentencePiece's ModelProto,
// then a short text encoded with whatever was accepted.
#include <string>

#include "fuzz_input.h"
#include "pbllm/tokenizer/sentencepiece.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return pbllm::fuzz::accept_or_reject([&] {
    const auto tokenizer =
        pbllm::tokenizer::SentencePieceBpe::from_file(pbllm::fuzz::input_file(data, size, "tokenizer.model"));
    tokenizer->encode("Hello world, 2024 héllo\n\n  it's");
  });
}
