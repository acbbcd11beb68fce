// The CPU column loop for eight rows at a time with AVX2 (one row per lane):
// walk_row's arithmetic, lane by lane, so its results are walk_row's bits.
#pragma once

#include "gptq_pb_phases.h"

namespace pbllm::kernels {

constexpr int64_t kGptqPbRowsPerAvx2Walk = 8;

bool gptq_pb_rows_avx2_available();

// walk_row for rows row0 .. row0 + 7; `buffer` holds 8 * n floats. Needs
// AVX2 (gptq_pb_rows_avx2_available).
void walk_rows8_avx2(const BlockProblem& p, const float* u_block, int64_t row0, float* buffer);

}  // namespace pbllm::kernels
