// safetensors reader and writer: round trips, and a clear error for each kind
// of corrupt file.
#include <ATen/ops/arange.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/randn.h>

#include <fstream>

#include "pbllm/core/check.h"
#include "pbllm/io/safetensors.h"
#include "test_support.h"

namespace pbllm::io {
namespace {

using pbllm::testing::ScratchDir;

// Writes a file by hand: 8-byte header length, header text, data bytes.
void write_raw(const std::filesystem::path& path, const std::string& header, const std::string& data,
               uint64_t header_length) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&header_length), 8);
  out << header << data;
}
void write_raw(const std::filesystem::path& path, const std::string& header, const std::string& data) {
  write_raw(path, header, data, header.size());
}

TEST(Safetensors, RoundTripsEveryDtypeAndMetadata) {
  ScratchDir dir;
  NamedTensors tensors;
  tensors.emplace_back("f32", at::randn({3, 5}));
  tensors.emplace_back("f16", at::randn({7}).to(at::kHalf));
  tensors.emplace_back("bf16", at::randn({2, 2, 3}).to(at::kBFloat16));
  tensors.emplace_back("i64", at::arange(10));
  tensors.emplace_back("scalar", at::randn({}));
  tensors.emplace_back("empty", at::randn({0, 4}));
  tensors.emplace_back("strided", at::randn({4, 6}).t());  // non-contiguous input
  save_safetensors((dir / "t.safetensors").string(), tensors, {{"format", "pt"}});

  SafetensorsFile file((dir / "t.safetensors").string());
  EXPECT_EQ(file.names().size(), tensors.size());
  EXPECT_EQ(file.metadata().at("format"), "pt");
  for (const auto& [name, tensor] : tensors) {
    const at::Tensor read = file.tensor(name);
    EXPECT_EQ(read.scalar_type(), tensor.scalar_type()) << name;
    EXPECT_TRUE(at::equal(read, tensor)) << name;
  }
  // Atomic write: no temporary left beside the file.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST(Safetensors, TensorsAreViewsThatOutliveTheFileObject) {
  ScratchDir dir;
  const at::Tensor original = at::randn({64, 64});
  save_safetensors((dir / "a.safetensors").string(), {{"w", original}});
  at::Tensor view;
  {
    SafetensorsFile file((dir / "a.safetensors").string());
    view = file.tensor("w");
  }
  EXPECT_TRUE(at::equal(view, original));
  view.mul_(2);  // copy-on-write mapping: the file itself is untouched
  EXPECT_TRUE(at::equal(SafetensorsFile((dir / "a.safetensors").string()).tensor("w"), original));
}

TEST(Safetensors, HeaderLengthPastTheEnd) {
  ScratchDir dir;
  write_raw(dir / "x.safetensors", "{}", "", 4096);
  EXPECT_ERROR_CONTAINS(SafetensorsFile((dir / "x.safetensors").string()), "runs past the end");
}

TEST(Safetensors, FileTooShort) {
  ScratchDir dir;
  std::ofstream(dir / "x.safetensors") << "abc";
  EXPECT_ERROR_CONTAINS(SafetensorsFile((dir / "x.safetensors").string()), "too short");
}

TEST(Safetensors, BadJson) {
  ScratchDir dir;
  write_raw(dir / "x.safetensors", "{\"a\": [1, 2", "");
  EXPECT_ERROR_CONTAINS(SafetensorsFile((dir / "x.safetensors").string()), "bad JSON header");
}

TEST(Safetensors, OffsetsOutOfRange) {
  ScratchDir dir;
  write_raw(dir / "x.safetensors", R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",
            std::string(8, '\0'));
  EXPECT_ERROR_CONTAINS(SafetensorsFile((dir / "x.safetensors").string()), "out of range");
}

TEST(Safetensors, OverlappingTensors) {
  ScratchDir dir;
  write_raw(dir / "x.safetensors",
            R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
            std::string(12, '\0'));
  EXPECT_ERROR_CONTAINS(SafetensorsFile((dir / "x.safetensors").string()), "overlap");
}

TEST(Safetensors, ShapeTimesDtypeDiffersFromByteLength) {
  ScratchDir dir;
  write_raw(dir / "x.safetensors", R"({"w": {"dtype": "F16", "shape": [3], "data_offsets": [0, 8]}})",
            std::string(8, '\0'));
  EXPECT_ERROR_CONTAINS(SafetensorsFile((dir / "x.safetensors").string()), "need 6");
}

TEST(Safetensors, ShapeWhoseByteSizeOverflowsIsAnError) {
  const ScratchDir dir;
  // 2^32 x 2^32 x 4 bytes wraps to 0, which the data offsets [0, 0] would match.
  write_raw(dir / "x.safetensors",
            R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", "");
  EXPECT_ERROR_CONTAINS(SafetensorsFile((dir / "x.safetensors").string()), "whose byte size overflows 64 bits");
}

TEST(Safetensors, UnknownDtype) {
  ScratchDir dir;
  write_raw(dir / "x.safetensors", R"({"w": {"dtype": "F8_E9", "shape": [1], "data_offsets": [0, 1]}})",
            std::string(1, '\0'));
  EXPECT_ERROR_CONTAINS(SafetensorsFile((dir / "x.safetensors").string()), "unknown dtype 'F8_E9'");
}

TEST(Safetensors, MissingTensorNamesTheFile) {
  ScratchDir dir;
  save_safetensors((dir / "a.safetensors").string(), {{"w", at::randn({2})}});
  EXPECT_ERROR_CONTAINS(SafetensorsFile((dir / "a.safetensors").string()).tensor("v"), "no tensor named 'v'");
}

TEST(Safetensors, MissingFile) {
  EXPECT_ERROR_CONTAINS(SafetensorsFile("/nonexistent/x.safetensors"), "cannot open");
}

}  // namespace
}  // namespace pbllm::io
