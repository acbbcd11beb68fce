// GPTQ-PB's column loop (phase 2 of gptq_pb_phases.h) for eight rows at once
// with AVX2, compiled with -mavx2 only (no FMA) and called only where the CPU
// has AVX2 (gptq_pb_rows_avx2_available).
//
// Tricks:
//  - Eight rows per register, one lane each: the buffer is [n][8], so the
//    error push onto the later columns, `buffer[j] -= e * u_row[j]` for
//    j > i (all but n of the block's n^2 / 2 steps), is one broadcast of
//    u_row[j], one multiply and one subtract for 8 rows: no horizontal work,
//    no remainder loop, and the trip count does not depend on alignment.
//    Per row, the scalar loop vectorises along j instead, where the trip
//    count shrinks to 1 at the block's end.
//  - The same roundings as walk_row, lane by lane, so the results are its
//    bits: a product then a difference (never an FMA, which rounds once),
//    the loss term diff * diff / (d * d) in float then summed in double in
//    column order, rint (the default rounding mode) for torch.round, and
//    min / max in the operand order whose NaN and signed-zero results are
//    fminf / fmaxf's here (max_ps returns its second operand, 0, for a NaN;
//    a code of -0 or +0 gives the same value).
//  - Both quantizers run for every lane and the mask picks one: cheaper
//    than branching per lane, and neither has side effects.
//  - Rows are independent: the caller gives each thread its groups of 8.

#include "gptq_pb_rows_avx2.h"

#include <cstdlib>

#if defined(__x86_64__) && defined(__AVX2__)  // elsewhere: "not available" (the stubs at the end)
#include <immintrin.h>
#define PBLLM_KERNEL_AVX2 1
#endif

namespace pbllm::kernels {
#ifdef PBLLM_KERNEL_AVX2
namespace {

constexpr int kLanes = 8;

// The 8 rows' values of a per-row parameter array.
inline __m256 per_row(const float* values, int64_t row0) { return _mm256_loadu_ps(values + row0); }

// grid_code then grid_value, lane by lane.
inline __m256 grid8(__m256 w, __m256 scale, __m256 zero, __m256 maxq) {
  __m256 code = _mm256_add_ps(_mm256_round_ps(_mm256_div_ps(w, scale), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), zero);
  code = _mm256_min_ps(_mm256_max_ps(code, _mm256_setzero_ps()), maxq);
  return _mm256_mul_ps(scale, _mm256_sub_ps(code, zero));
}

// The low-bit quantizer's parameters for 8 rows.
struct LowBit8 {
  LowBitMethod method;
  __m256 mean, scale, zero, maxq;
};

// low_code then low_value, lane by lane.
inline __m256 low8(__m256 w, const LowBit8& r) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  switch (r.method) {
    case LowBitMethod::xnor: {
      const __m256 centred = _mm256_sub_ps(w, r.mean);
      const __m256 code = _mm256_or_ps(_mm256_and_ps(_mm256_cmp_ps(centred, zero, _CMP_GT_OQ), one),
                                       _mm256_and_ps(_mm256_cmp_ps(centred, zero, _CMP_LT_OQ), _mm256_set1_ps(-1.0f)));
      return _mm256_add_ps(_mm256_mul_ps(code, r.scale), r.mean);
    }
    case LowBitMethod::sign:
      return _mm256_mul_ps(_mm256_and_ps(_mm256_cmp_ps(w, zero, _CMP_GT_OQ), one), r.scale);
    case LowBitMethod::two_bit:
    case LowBitMethod::four_bit:
      return grid8(w, r.scale, r.zero, r.maxq);
    case LowBitMethod::prune:
      return zero;
    case LowBitMethod::no:
      break;
  }
  return w;
}

}  // namespace

bool gptq_pb_rows_avx2_available() { return __builtin_cpu_supports("avx2"); }

void walk_rows8_avx2(const BlockProblem& p, const float* u_block, int64_t row0, float* buffer) {
  const int64_t n = p.n;
  for (int l = 0; l < kLanes; ++l)
    for (int64_t j = 0; j < n; ++j) buffer[j * kLanes + l] = p.weights[(row0 + l) * p.columns + p.first + j];
  const __m256 high_scale = per_row(p.high.scale, row0), high_zero = per_row(p.high.zero, row0);
  const __m256 high_maxq = _mm256_set1_ps(p.high.maxq);
  const LowBit8 low{p.low.method, per_row(p.low.mean, row0), per_row(p.low.scale, row0), per_row(p.low.zero, row0),
                    _mm256_set1_ps(p.low.maxq)};
  __m256d loss_low = _mm256_setzero_pd(), loss_high = _mm256_setzero_pd();  // lanes 0-3, 4-7
  alignas(32) float q_lanes[kLanes], e_lanes[kLanes];
  for (int64_t i = 0; i < n; ++i) {
    const __m256 w = _mm256_loadu_ps(buffer + i * kLanes);
    alignas(32) int32_t binarized[kLanes];
    for (int l = 0; l < kLanes; ++l) binarized[l] = p.binarized[(row0 + l) * p.columns + p.first + i] ? -1 : 0;
    const __m256 low_lanes = _mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(binarized)));
    const __m256 q = _mm256_blendv_ps(grid8(w, high_scale, high_zero, high_maxq), low8(w, low), low_lanes);
    const float* u_row = u_block + i * n;
    const __m256 d = _mm256_set1_ps(u_row[i]);
    const __m256 difference = _mm256_sub_ps(w, q);
    const __m256 term = _mm256_div_ps(_mm256_mul_ps(difference, difference), _mm256_mul_ps(d, d));
    loss_low = _mm256_add_pd(loss_low, _mm256_cvtps_pd(_mm256_castps256_ps128(term)));
    loss_high = _mm256_add_pd(loss_high, _mm256_cvtps_pd(_mm256_extractf128_ps(term, 1)));
    _mm256_store_ps(q_lanes, q);
    for (int l = 0; l < kLanes; ++l) p.weights[(row0 + l) * p.columns + p.first + i] = q_lanes[l];
    if (!p.compensate) continue;
    const __m256 e = _mm256_div_ps(difference, d);
    _mm256_store_ps(e_lanes, e);
    for (int l = 0; l < kLanes; ++l) p.errors[(row0 + l) * n + i] = e_lanes[l];
    for (int64_t j = i + 1; j < n; ++j) {
      float* b = buffer + j * kLanes;
      _mm256_storeu_ps(b, _mm256_sub_ps(_mm256_loadu_ps(b), _mm256_mul_ps(e, _mm256_set1_ps(u_row[j]))));
    }
  }
  alignas(32) double losses[kLanes];
  _mm256_store_pd(losses, loss_low);
  _mm256_store_pd(losses + 4, loss_high);
  for (int l = 0; l < kLanes; ++l) p.row_loss[row0 + l] += losses[l];
}

#else  // not x86-64 with AVX2: never called, as the check says no

bool gptq_pb_rows_avx2_available() { return false; }
void walk_rows8_avx2(const BlockProblem&, const float*, int64_t, float*) { std::abort(); }

#endif

}  // namespace pbllm::kernels
