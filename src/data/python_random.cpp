#include "pbllm/data/python_random.h"

#include "pbllm/core/check.h"

namespace pbllm::data {
namespace {
constexpr int kN = 624, kM = 397;
constexpr uint32_t kMatrixA = 0x9908b0dfU, kUpperMask = 0x80000000U, kLowerMask = 0x7fffffffU;
}  // namespace

void PythonRandom::init_genrand(uint32_t seed) {
  state_[0] = seed;
  for (int i = 1; i < kN; ++i)
    state_[i] = 1812433253U * (state_[i - 1] ^ (state_[i - 1] >> 30)) + static_cast<uint32_t>(i);
  index_ = kN;
}

void PythonRandom::seed_with(uint64_t seed) {
  // CPython splits |seed| into 32-bit words, least significant first (at
  // least one word, so 0 is the key [0]), and calls init_by_array.
  uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  const int key_length = (seed >> 32) ? 2 : 1;
  init_genrand(19650218U);
  int i = 1, j = 0;
  for (int k = std::max(kN, key_length); k > 0; --k) {
    state_[i] = (state_[i] ^ ((state_[i - 1] ^ (state_[i - 1] >> 30)) * 1664525U)) + key[j] + static_cast<uint32_t>(j);
    ++i;
    ++j;
    if (i >= kN) {
      state_[0] = state_[kN - 1];
      i = 1;
    }
    if (j >= key_length) j = 0;
  }
  for (int k = kN - 1; k > 0; --k) {
    state_[i] = (state_[i] ^ ((state_[i - 1] ^ (state_[i - 1] >> 30)) * 1566083941U)) - static_cast<uint32_t>(i);
    ++i;
    if (i >= kN) {
      state_[0] = state_[kN - 1];
      i = 1;
    }
  }
  state_[0] = 0x80000000U;  // non-zero initial array
  index_ = kN;
}

uint32_t PythonRandom::next_uint32() {
  if (index_ >= kN) {
    for (int k = 0; k < kN; ++k) {
      const uint32_t y = (state_[k] & kUpperMask) | (state_[(k + 1) % kN] & kLowerMask);
      state_[k] = state_[(k + kM) % kN] ^ (y >> 1) ^ ((y & 1U) ? kMatrixA : 0U);
    }
    index_ = 0;
  }
  uint32_t y = state_[index_++];
  y ^= (y >> 11);
  y ^= (y << 7) & 0x9d2c5680U;
  y ^= (y << 15) & 0xefc60000U;
  y ^= (y >> 18);
  return y;
}

uint32_t PythonRandom::getrandbits(int bits) {
  PBLLM_CHECK(bits >= 1 && bits <= 32, "getrandbits: ", bits, " bits is outside 1..32");
  return next_uint32() >> (32 - bits);
}

int64_t PythonRandom::randint(int64_t low, int64_t high) {
  PBLLM_CHECK(high >= low, "randint: empty range [", low, ", ", high, "]");
  const uint64_t n = static_cast<uint64_t>(high - low) + 1;
  PBLLM_CHECK(n < (1ULL << 32), "randint: ranges of 2^32 or more are not supported");
  int bits = 0;  // n.bit_length()
  while (bits < 64 && (n >> bits) != 0) ++bits;
  // _randbelow_with_getrandbits: draw bit_length(n) bits until below n.
  uint64_t r = getrandbits(std::min(bits, 32));
  while (r >= n) r = getrandbits(std::min(bits, 32));
  return low + static_cast<int64_t>(r);
}

}  // namespace pbllm::data
