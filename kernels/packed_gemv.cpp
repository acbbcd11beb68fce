// The portable packed GEMV (see packed_gemv.h), the triplet-sum tables both
// kernels read, and the runtime choice of the AVX2 kernel.
#include "packed_gemv.h"

#include <cpuid.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "packed_gemv_row.h"

namespace pbllm::kernels {

float round_to_half(float value) {
  // IEEE binary16, round to nearest even, in float bits (clang 14 has no
  // _Float16 on x86): keep 10 mantissa bits of a normal half, multiples of
  // 2^-24 below 2^-14 (the subnormals), infinity from 65520 on.
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  const uint32_t sign = bits & 0x80000000u, magnitude = bits ^ sign;
  uint32_t rounded;
  if (magnitude >= 0x7f800000u) {
    return value;  // NaN, infinity
  } else if (magnitude >= 0x477ff000u) {
    rounded = 0x7f800000u;  // 65520 and above: the tie at 65520 goes to the even neighbour, infinity
  } else if (magnitude < 0x38800000u) {
    float scaled;
    std::memcpy(&scaled, &magnitude, 4);
    scaled = std::nearbyint(scaled * 16777216.0f) / 16777216.0f;  // exact scalings by 2^24
    std::memcpy(&rounded, &scaled, 4);
  } else {
    rounded = (magnitude + 0x0fffu + ((magnitude >> 13) & 1u)) & ~0x1fffu;
  }
  rounded |= sign;
  float result;
  std::memcpy(&result, &rounded, 4);
  return result;
}

void packed_gemv_triplet_sums(const float* x, int64_t columns, int64_t group_columns, int64_t group_triplets,
                              float* out) {
  const int64_t groups = (columns + group_columns - 1) / group_columns;
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t t = 0; t < group_triplets; ++t) {
      float* table = out + (g * group_triplets + t) * 8;
      float xt[kGemvTripletColumns];
      for (int64_t j = 0; j < kGemvTripletColumns; ++j) {
        const int64_t in_group = t * kGemvTripletColumns + j, column = g * group_columns + in_group;
        xt[j] = in_group < group_columns && column < columns ? x[column] : 0.0f;  // padding: its bit is never set
      }
      table[0] = 0;
      // Each subset = the subset without its lowest bit, plus that bit's x.
      for (int b = 1; b < 8; ++b) table[b] = table[b & (b - 1)] + xt[__builtin_ctz(b)];
    }
}

void packed_gemv_blocks_portable(const PackedGemvProblem& p, int64_t first, int64_t last) {
  gemv_blocks(
      p, first, last, [&](int64_t block, float* ones) { code_one_sums(p, block, ones); },
      [&](int64_t row, float* salient_x) {
        return salient_part(p, row, p.salient_start[row], p.salient_start[row + 1], salient_x);
      });
}

bool packed_gemv_avx2_available() {
  // F16C through cpuid (leaf 1, ecx bit 29): clang 14's __builtin_cpu_supports does not know it.
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
}

}  // namespace pbllm::kernels
