// c4 JSON lines: the input is gzip'd first, so the fuzzer works on the lines
// ({"text": ...} objects) rather than on gzip's checksums.
#include <zlib.h>

#include "fuzz_input.h"
#include "pbllm/data/datasets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = pbllm::fuzz::input_file(nullptr, 0, "c4.json.gz");
  gzFile out = gzopen(path.c_str(), "wb");
  gzwrite(out, data, static_cast<unsigned>(size));
  gzclose(out);
  return pbllm::fuzz::accept_or_reject([&] { pbllm::data::read_c4_documents(path); });
}
