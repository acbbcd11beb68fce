// SHA-256 of files, for the data hashes in reports and the model-file hashes
// of the resume manifest (FIPS 180-4).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace pbllm::io {

// fastest: the CPU's SHA extensions where it has them (about 5x the portable
// code here), else portable C++; portable: always the C++ (tests compare them).
enum class Sha256Engine { fastest, portable };

// An incremental hash: update() with the bytes in any pieces, then hex() once.
class Sha256 {
 public:
  explicit Sha256(Sha256Engine engine = Sha256Engine::fastest);
  void update(const uint8_t* data, size_t size);
  std::string hex();  // lower-case hex digest; pads, so call it last

 private:
  void compress(const uint8_t* data, size_t blocks);
  void compress_portable(const uint8_t* block);
  const bool hardware_;
  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> block_{};
  size_t buffered_ = 0;
  uint64_t length_ = 0;
};

// Lower-case hex digests.
std::string sha256_hex(std::string_view bytes, Sha256Engine engine = Sha256Engine::fastest);
std::string sha256_file(const std::filesystem::path& path);

}  // namespace pbllm::io
