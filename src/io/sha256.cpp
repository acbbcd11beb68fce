#include "pbllm/io/sha256.h"

#include <array>
#include <cstdio>
#include <fstream>
#include <vector>

#include "pbllm/core/check.h"
#include "sha256_x86.h"

namespace pbllm::io {
namespace {

uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

}  // namespace

Sha256::Sha256(Sha256Engine engine)
    : hardware_(engine == Sha256Engine::fastest && kernels::sha256_x86_available()),
      state_{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19} {}

void Sha256::update(const uint8_t* data, size_t size) {
  length_ += size;
  if (buffered_ > 0) {  // complete the partial block first
    const size_t take = std::min(size, 64 - buffered_);
    std::copy(data, data + take, block_.begin() + buffered_);
    buffered_ += take;
    data += take;
    size -= take;
    if (buffered_ < 64) return;
    compress(block_.data(), 1);
    buffered_ = 0;
  }
  const size_t whole = size / 64;  // straight from the caller's buffer
  compress(data, whole);
  std::copy(data + whole * 64, data + size, block_.begin());
  buffered_ = size - whole * 64;
}

std::string Sha256::hex() {
  const uint64_t bits = length_ * 8;
  const uint8_t pad = 0x80;
  update(&pad, 1);
  const uint8_t zero = 0;
  while (buffered_ != 56) update(&zero, 1);
  for (int shift = 56; shift >= 0; shift -= 8) {
    const uint8_t byte = static_cast<uint8_t>(bits >> shift);
    update(&byte, 1);
  }
  std::string out;
  char digits[9];
  for (uint32_t word : state_) {
    std::snprintf(digits, sizeof digits, "%08x", word);
    out += digits;
  }
  return out;
}

void Sha256::compress(const uint8_t* data, size_t blocks) {
  if (hardware_) {
    kernels::sha256_blocks_x86(state_.data(), data, blocks);
    return;
  }
  for (; blocks > 0; --blocks, data += 64) compress_portable(data);
}

void Sha256::compress_portable(const uint8_t* block) {
  std::array<uint32_t, 64> w{};
  for (int i = 0; i < 16; ++i)
    w[i] = (uint32_t(block[4 * i]) << 24) | (uint32_t(block[4 * i + 1]) << 16) |
           (uint32_t(block[4 * i + 2]) << 8) | uint32_t(block[4 * i + 3]);
  for (int i = 16; i < 64; ++i) {
    const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  auto s = state_;
  for (int i = 0; i < 64; ++i) {
    const uint32_t t1 = s[7] + (rotr(s[4], 6) ^ rotr(s[4], 11) ^ rotr(s[4], 25)) + ((s[4] & s[5]) ^ (~s[4] & s[6])) +
                        kernels::kSha256Round[i] + w[i];
    const uint32_t t2 = (rotr(s[0], 2) ^ rotr(s[0], 13) ^ rotr(s[0], 22)) + ((s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]));
    s = {t1 + t2, s[0], s[1], s[2], s[3] + t1, s[4], s[5], s[6]};
  }
  for (int i = 0; i < 8; ++i) state_[i] += s[i];
}

std::string sha256_hex(std::string_view bytes, Sha256Engine engine) {
  Sha256 hash(engine);
  hash.update(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return hash.hex();
}

std::string sha256_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  PBLLM_CHECK(in.good(), path.string(), ": cannot open");
  Sha256 hash(Sha256Engine::fastest);
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    hash.update(reinterpret_cast<const uint8_t*>(buffer.data()), static_cast<size_t>(in.gcount()));
  }
  return hash.hex();
}

}  // namespace pbllm::io
