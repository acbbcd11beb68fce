// The portable packed GEMV (see packed_gemv.h), the byte-sum tables both
// kernels read, and the runtime choice of the AVX2 kernel.
#include "packed_gemv.h"

#include <vector>

#include "packed_gemv_row.h"

namespace pbllm::kernels {

float round_to_half(float value) {
  // IEEE binary16, round to nearest even, through the compiler's _Float16.
  return static_cast<float>(static_cast<_Float16>(value));
}

void packed_gemv_byte_sums(const float* x, int64_t words, float* out) {
  for (int64_t chunk = 0; chunk < words * 8; ++chunk) {
    float* table = out + chunk * 256;
    const float* xc = x + chunk * 8;
    table[0] = 0;
    // Each subset = the subset without its lowest bit, plus that bit's x.
    for (int b = 1; b < 256; ++b) table[b] = table[b & (b - 1)] + xc[__builtin_ctz(b)];
  }
}

void packed_gemv_rows_portable(const PackedGemvProblem& p, int64_t first, int64_t last) {
  std::vector<float> ones(p.groups), salient_x(p.groups);
  for (int64_t row = first; row < last; ++row) {
    for (int64_t g = 0; g < p.groups; ++g) salient_x[g] = 0;
    code_one_sums(p, row, ones.data());
    const float salient_total = salient_part(p, row, p.salient_start[row], p.salient_start[row + 1], salient_x.data());
    p.y[row] = finish_row(p, row, ones.data(), salient_x.data(), salient_total);
  }
}

bool packed_gemv_avx2_available() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
}

}  // namespace pbllm::kernels
