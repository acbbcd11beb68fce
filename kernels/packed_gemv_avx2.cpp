// The AVX2 packed GEMV (see packed_gemv.h), compiled with -mavx2 -mfma -mf16c
// and called only when the CPU has them.
//
// Tricks:
//  - Eight rows per register, one lane each (T-MAC's idea, in float): the
//    24 bits of a triplet hold the 8 rows' 3-bit codes for the same 3
//    columns, and those columns' 8 subset sums are one register of the
//    table. One broadcast of the 4 bytes at the triplet, one variable right
//    shift puts each row's 3 bits in the low bits of its lane, one permute
//    (vpermps reads only bits 0..2 of each index, so the neighbouring
//    triplets' bits above them are ignored) looks all 8 rows up: 24 weights
//    in 3 instructions plus the add. Four columns per lookup (16-entry
//    tables, two permutes and a blend) measured slower: the blend is 3 uops
//    on Intel cores. A mask per byte of one row's bits took ~8 per 8 weights.
//  - The table (8 floats per 3 columns, 43 KiB at 4096 columns) is read
//    from L1 / L2 once per 8 rows; it is the same for every row block.
//  - Four accumulators per group hide the add latency (4 cycles).
//  - Software prefetch of the sign bytes 2 KiB ahead and the salient words
//    2 KiB ahead: with the weights coming from memory (every Linear of a
//    model read once per token) the hardware prefetcher alone left the
//    kernel at 1.42 ms for 4096 x 4096 where the cache-hot run takes 0.72;
//    with it, 0.97.
//  - Salient weights 8 at a time when a row is one group: one load of 8
//    words, their low halves the gather indices into x, their high halves
//    the values (bfloat16: a mask; half: shift and an exact scaling; float32
//    checkpoints: the code through scale and zero), then one FMA. The
//    gather is this part's cost (~4 cycles per 8 here); a code widened from
//    bytes and rounded per weight cost as much again.
//  - Row blocks are independent: the caller splits them between threads.

#include <cstdlib>
#include <vector>

#include "packed_gemv.h"
#include "packed_gemv_row.h"

#if defined(__x86_64__) && defined(__AVX2__)  // elsewhere: "not available" (the stubs at the end)
#include <cpuid.h>
#include <immintrin.h>
#define PBLLM_KERNEL_AVX2 1
#endif

namespace pbllm::kernels {
#ifdef PBLLM_KERNEL_AVX2
namespace {

inline float horizontal_sum(__m256 v) {
  const __m128 low = _mm256_castps256_ps128(v), high = _mm256_extractf128_ps(v, 1);
  __m128 sum = _mm_add_ps(low, high);
  sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
  sum = _mm_add_ss(sum, _mm_shuffle_ps(sum, sum, 1));
  return _mm_cvtss_f32(sum);
}

// The 8 salient words' values, as salient_value computes them.
template <SalientHigh kHigh>
inline __m256 salient_values8(__m256i words, __m256 scale, __m256 zero) {
  const __m256i sign = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  switch (kHigh) {
    case SalientHigh::bfloat16:  // the high half is the float's
      return _mm256_castsi256_ps(_mm256_and_si256(words, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
    case SalientHigh::half: {  // half_bits_to_float: no cross-lane shuffle, unlike packing the halves for F16C
      const __m256i magnitude = _mm256_srli_epi32(_mm256_and_si256(words, _mm256_set1_epi32(0x7fff0000)), 3);
      const __m256 value = _mm256_mul_ps(_mm256_castsi256_ps(magnitude), _mm256_set1_ps(0x1p112f));
      return _mm256_or_ps(value, _mm256_castsi256_ps(_mm256_and_si256(words, sign)));
    }
    case SalientHigh::affine_code:  // a product and a sum, not an FMA: decoding rounds twice
      return _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(words, 16)), scale), zero);
    case SalientHigh::code:
      break;
  }
  return _mm256_mul_ps(scale, _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(words, 16)), zero));
}

// A one-group row's salient weights: sum of h * x, and their x into *salient_x.
// A template on the word's kind so that the loop holds no branch. `between()`
// runs once per 16 weights: other work that the gathers' latency hides.
template <SalientHigh kHigh, typename Between>
float salient_part_avx2(const PackedGemvProblem& p, int64_t row, float* salient_x, Between&& between) {
  const int64_t from = p.salient_start[row], to = p.salient_start[row + 1];
  const __m256 scale = _mm256_set1_ps(p.high_scale[row]), zero = _mm256_set1_ps(p.high_zero[row]);
  const __m256i column_bits = _mm256_set1_epi32(0xffff);
  // Two chains of each sum: one FMA chain alone held the loop at its 4-cycle latency.
  __m256 hx0 = _mm256_setzero_ps(), hx1 = hx0, x0 = hx0, x1 = hx0;
  auto step = [&](int64_t at, __m256& hx, __m256& xs) {
    const __m256i words = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p.salient + at));
    const __m256 x = _mm256_i32gather_ps(p.x, _mm256_and_si256(words, column_bits), 4);
    hx = _mm256_fmadd_ps(salient_values8<kHigh>(words, scale, zero), x, hx);
    xs = _mm256_add_ps(xs, x);
  };
  int64_t k = from;
  for (; k + 16 <= to; k += 16) {
    _mm_prefetch(reinterpret_cast<const char*>(p.salient + k + 512), _MM_HINT_T0);
    step(k, hx0, x0);
    step(k + 8, hx1, x1);
    between();
  }
  if (k + 8 <= to) step(k, hx0, x0), k += 8;
  *salient_x += horizontal_sum(_mm256_add_ps(x0, x1));
  return horizontal_sum(_mm256_add_ps(hx0, hx1)) + salient_part(p, row, k, to, salient_x);
}

// 24 weights: the 8 rows' sums over the code-1 weights of triplet t's columns.
inline __m256 triplet_lookup(const PackedGemvProblem& p, const uint8_t* signs, int64_t t) {
  const __m256i shift = _mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21);
  const __m256i word = _mm256_set1_epi32(static_cast<int>(triplet_word(signs, t)));
  return _mm256_permutevar8x32_ps(_mm256_load_ps(p.triplet_sums + t * 8), _mm256_srlv_epi32(word, shift));
}

// The code-1 sums of the 8 rows of a block over triplets [t, end), in steps.
class TripletSums {
 public:
  TripletSums(const PackedGemvProblem& p, int64_t block, int64_t t, int64_t end)
      : p_(p), signs_(p.signs + block * p.block_bytes), t_(t), end_(end) {}
  int64_t left() const { return end_ - t_; }
  // The next n triplets (fewer at the end).
  void advance(int64_t n) {
    n = std::min(n, end_ - t_);
    for (; n >= 4; n -= 4, t_ += 4) {
      _mm_prefetch(reinterpret_cast<const char*>(signs_ + 3 * t_ + 2048), _MM_HINT_T0);
      a0_ = _mm256_add_ps(a0_, triplet_lookup(p_, signs_, t_));
      a1_ = _mm256_add_ps(a1_, triplet_lookup(p_, signs_, t_ + 1));
      a2_ = _mm256_add_ps(a2_, triplet_lookup(p_, signs_, t_ + 2));
      a3_ = _mm256_add_ps(a3_, triplet_lookup(p_, signs_, t_ + 3));
    }
    for (; n > 0; --n, ++t_) a0_ = _mm256_add_ps(a0_, triplet_lookup(p_, signs_, t_));
  }
  // All that is left, then the 8 sums into ones[0..7].
  void finish(float* ones) {
    advance(left());
    _mm256_storeu_ps(ones, _mm256_add_ps(_mm256_add_ps(a0_, a1_), _mm256_add_ps(a2_, a3_)));
  }

 private:
  const PackedGemvProblem& p_;
  const uint8_t* signs_;
  int64_t t_, end_;
  __m256 a0_ = _mm256_setzero_ps(), a1_ = a0_, a2_ = a0_, a3_ = a0_;
};

// Each group's sum of x over the code-1 weights of the block's 8 rows.
void code_one_sums_avx2(const PackedGemvProblem& p, int64_t block, float* ones) {
  for (int64_t g = 0; g < p.groups; ++g)
    TripletSums(p, block, g * p.group_triplets, (g + 1) * p.group_triplets).finish(ones + g * kGemvBlockRows);
}

// A block of one-group rows with the sign lookups spread evenly between the
// salient gathers, so that the lookups run while the gathers wait on memory:
// 0.97 -> 0.88 ms at 4096 x 4096, one thread, weights from memory. (With the
// weights in cache nothing changes, 0.73 ms: the gathers' uops and the
// permutes compete for the same shuffle port.)
template <SalientHigh kHigh>
void one_group_block_avx2(const PackedGemvProblem& p, int64_t block) {
  const int64_t first = block * kGemvBlockRows, last = std::min(p.rows, first + kGemvBlockRows);
  int64_t steps = 0;  // the salient loops' 16-weight steps in the block
  for (int64_t row = first; row < last; ++row) steps += (p.salient_start[row + 1] - p.salient_start[row]) / 16;
  TripletSums sums(p, block, 0, p.group_triplets);
  const int64_t per_step = steps > 0 ? (sums.left() + steps - 1) / steps : 0;
  float totals[kGemvBlockRows], salient_x[kGemvBlockRows] = {}, ones[kGemvBlockRows];
  for (int64_t row = first; row < last; ++row)
    totals[row - first] = salient_part_avx2<kHigh>(p, row, &salient_x[row - first], [&] { sums.advance(per_step); });
  sums.finish(ones);
  for (int64_t row = first; row < last; ++row)
    p.y[row] = finish_row(p, row, ones, &salient_x[row - first], totals[row - first]);
}

template <SalientHigh kHigh>
void gemv_blocks_avx2(const PackedGemvProblem& p, int64_t first, int64_t last) {
  if (p.groups == 1) {
    for (int64_t block = first; block < last; ++block) one_group_block_avx2<kHigh>(p, block);
    return;
  }
  gemv_blocks(
      p, first, last, [&](int64_t block, float* ones) { code_one_sums_avx2(p, block, ones); },
      [&](int64_t row, float* salient_x) {
        return salient_part(p, row, p.salient_start[row], p.salient_start[row + 1], salient_x);
      });
}

}  // namespace

// Here, beside the kernel: a build without it (no -mavx2) says no on any CPU.
bool packed_gemv_avx2_available() {
  // F16C through cpuid (leaf 1, ecx bit 29): clang 14's __builtin_cpu_supports does not know it.
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
}

void packed_gemv_blocks_avx2(const PackedGemvProblem& p, int64_t first, int64_t last) {
  switch (p.salient_high) {
    case SalientHigh::half:
      return gemv_blocks_avx2<SalientHigh::half>(p, first, last);
    case SalientHigh::bfloat16:
      return gemv_blocks_avx2<SalientHigh::bfloat16>(p, first, last);
    case SalientHigh::affine_code:
      return gemv_blocks_avx2<SalientHigh::affine_code>(p, first, last);
    case SalientHigh::code:
      break;
  }
  gemv_blocks_avx2<SalientHigh::code>(p, first, last);
}

#else  // not x86-64 with AVX2: never called, as the check says no

bool packed_gemv_avx2_available() { return false; }
void packed_gemv_blocks_avx2(const PackedGemvProblem&, int64_t, int64_t) { std::abort(); }

#endif

}  // namespace pbllm::kernels
