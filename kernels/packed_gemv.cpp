// The portable packed GEMV (see packed_gemv.h), the triplet-sum tables both
// kernels read, and the runtime choice of the AVX2 kernel.
#include "packed_gemv.h"

#include <cstdint>

#include "packed_gemv_row.h"

namespace pbllm::kernels {

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

}  // namespace pbllm::kernels
