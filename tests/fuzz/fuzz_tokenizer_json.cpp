// tokenizer.json (byte-level BPE): the vocabulary, merges, added tokens and
// pre-tokenizer, then a short text encoded with whatever was accepted.
#include "fuzz_input.h"
#include "pbllm/tokenizer/byte_level_bpe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return pbllm::fuzz::accept_or_reject([&] {
    const auto tokenizer =
        pbllm::tokenizer::ByteLevelBpe::from_tokenizer_json(pbllm::fuzz::input_file(data, size, "tokenizer.json"));
    tokenizer->encode(" Hello world, 2024 héllo\n\n  it's");
  });
}
