// Python's `random` module, bit for bit where the reference uses it:
// random.seed(int) (MT19937 seeded by init_by_array) and random.randint(a, b)
// (rejection sampling over getrandbits), so --seed picks the reference's windows.
#pragma once

#include <array>
#include <cstdint>

namespace pbllm::data {

class PythonRandom {
 public:
  explicit PythonRandom(uint64_t seed) { seed_with(seed); }
  // random.seed(seed) for a non-negative integer.
  void seed_with(uint64_t seed);
  // random.getrandbits(bits) for 1 <= bits <= 32.
  uint32_t getrandbits(int bits);
  // random.randint(low, high): uniform on [low, high], both included.
  int64_t randint(int64_t low, int64_t high);

 private:
  uint32_t next_uint32();
  void init_genrand(uint32_t seed);
  std::array<uint32_t, 624> state_{};
  int index_ = 625;
};

}  // namespace pbllm::data
