// SHA-256 (the model-file hashes of the resume manifest, the data hashes of
// reports): FIPS 180-4's test vectors on both engines, and the SHA-extension
// engine against the portable one on every length around the block size, on
// bytes fed in pieces that split blocks, and on a file read in 1 MiB chunks.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <random>

#include "pbllm/io/sha256.h"
#include "sha256_x86.h"
#include "test_support.h"

namespace pbllm::io {
namespace {

TEST(Sha256, FipsVectorsOnBothEngines) {
  const std::vector<std::pair<std::string, std::string>> vectors = {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
      {std::string(1000000, 'a'), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"}};
  for (const Sha256Engine engine : {Sha256Engine::fastest, Sha256Engine::portable})
    for (const auto& [message, digest] : vectors)
      EXPECT_EQ(sha256_hex(message, engine), digest) << message.size() << " bytes";
}

std::string random_bytes(size_t size, uint32_t seed) {
  std::mt19937 random(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(random());
  return bytes;
}

TEST(Sha256, ExtensionsEqualThePortableCode) {
  if (!kernels::sha256_x86_available()) GTEST_SKIP() << "this CPU has no SHA extensions: only the portable code runs";
  const std::string bytes = random_bytes(3000, 7);
  for (size_t size = 0; size <= 300; ++size) {
    const std::string_view message(bytes.data(), size);
    EXPECT_EQ(sha256_hex(message, Sha256Engine::fastest), sha256_hex(message, Sha256Engine::portable)) << size;
  }
  // The same bytes fed in pieces of every size from 1 to 130: partial blocks
  // completed, then whole blocks straight from the piece, then a tail.
  for (size_t piece = 1; piece <= 130; ++piece) {
    Sha256 hash;
    for (size_t at = 0; at < bytes.size(); at += piece)
      hash.update(reinterpret_cast<const uint8_t*>(bytes.data()) + at, std::min(piece, bytes.size() - at));
    EXPECT_EQ(hash.hex(), sha256_hex(bytes, Sha256Engine::portable)) << "pieces of " << piece;
  }
  // A file of 3 MiB + 5 bytes: sha256_file reads 1 MiB at a time.
  pbllm::testing::ScratchDir dir;
  const std::string big = random_bytes((3 << 20) + 5, 8);
  std::ofstream(dir / "model.bin", std::ios::binary) << big;
  EXPECT_EQ(sha256_file(dir / "model.bin"), sha256_hex(big, Sha256Engine::portable));
}

}  // namespace
}  // namespace pbllm::io
