// y = W x straight from a 1-bit packed Linear (xnor or sign non-salient
// weights, 8-bit salient ones), one range of row blocks per call: the CPU
// kernel that generation runs one token at a time (pack/packed_gemv.h is its
// host side).
//
// The layout (built once from the packed checkpoint, ~4.25 bits per weight at
// 10% salient):
//   signs    per block of 8 rows, a byte stream of 3 bytes per triplet (3
//            columns of a parameter group): bits 3i .. 3i + 2 of a triplet's
//            24 bits are the code bits of row 8b + i at those 3 columns (set
//            where a non-salient weight has code 1: xnor +1, sign 1; clear at
//            salient weights and padding). Groups are padded to whole
//            triplets. Eight rows' bits for the same columns share one word,
//            so a kernel looks eight rows up at once in one table;
//   salient  one 32-bit word per salient weight, row-major, row r's from
//            salient_start[r]: the column in the low 16 bits; in the high 16
//            the weight's value as the checkpoint holds it (bfloat16 or half
//            bits) or, for a float32 checkpoint, its code (value = scale *
//            (code - zero), or code * scale + offset on an affine grid,
//            float32 arithmetic as decoding). A list, not a
//            bitmap: walking a bitmap's set bits costs a mispredicted branch
//            per word, a list is read 8 at a time (a gather of x). With the
//            value in the word, the kernel neither converts a code nor
//            rounds: decoding did that once, on the host.
// With one value per code and group, v1 = value(1) and v0 = value(0) (xnor:
// mean + alpha, mean - alpha), a row's non-salient part is
//   sum_g v1[g] * P_g + v0[g] * N_g,   P_g = sum of x over the group's code-1 weights,
//                                       N_g = X_g - P_g - S_g,
// with X_g = sum of x over the group (once per x, not per row) and S_g the sum
// of x over the group's salient weights. So only P needs a pass over the
// bits, and P is a sum of table lookups: triplet_sums holds, for each
// triplet, the sums of x over its 8 subsets (built once per x, shared by
// every row; 43 KiB at 4096 columns, so it stays in L1 / L2). A lookup adds
// 3 weights; the AVX2 kernel does 8 lookups (8 rows) in one permute. The
// salient weights (~10%) add h * x, h = the weight's exact decoded value, so
// the result is the decoded matrix's product up to summation order.
#pragma once

#include <stdint.h>

namespace pbllm::kernels {

// What the high 16 bits of a salient word hold (by the checkpoint's dtype):
// a float32 checkpoint's code, on a zero-point grid (value = scale * (code -
// zero)) or an affine one (code * scale + offset, pbllm-qat's), or the value's bits.
enum class SalientHigh : int32_t { code = 0, half = 1, bfloat16 = 2, affine_code = 3 };

constexpr int64_t kGemvBlockRows = 8;  // rows per word of signs (one AVX2 lane each)
constexpr int64_t kGemvTripletColumns = 3;
constexpr int64_t kGemvTripletBytes = 3;  // 8 rows x 3 columns of code bits

struct PackedGemvProblem {
  int64_t rows, columns;
  int64_t group_columns;     // columns per parameter group (the last one may be shorter)
  int64_t group_triplets;    // triplets per group: ceil(group_columns / 3)
  int64_t groups;
  int64_t block_bytes;       // bytes of signs per row block: 3 per triplet, + 1 so a 4-byte read of the last one stays inside
  const uint8_t* signs;             // [ceil(rows / 8), block_bytes]
  const uint32_t* salient;          // salient weights' words, row-major
  const int64_t* salient_start;     // [rows + 1]
  SalientHigh salient_high;
  const float* one_value;    // [groups, rows]: value of code 1
  const float* zero_value;   // [groups, rows]: value of code 0
  const float* high_scale;   // [rows] (SalientHigh::code, affine_code)
  const float* high_zero;    // [rows] (SalientHigh::code; affine_code: the offsets)
  const float* x;            // [columns]
  const float* group_sums;   // [groups]: sum of x over each group
  const float* triplet_sums;  // [groups * group_triplets][8]: entry b of triplet t = sum of its x over the bits of b
  float* y;                  // [rows]
};

// triplet_sums for x into out ([groups * group_triplets][8] floats).
void packed_gemv_triplet_sums(const float* x, int64_t columns, int64_t group_columns, int64_t group_triplets,
                              float* out);

// Row blocks [first, last) (rows 8 * first .. min(8 * last, rows)). The
// portable one runs anywhere; the AVX2 one needs a CPU with AVX2, FMA and F16C
// (packed_gemv_avx2_available()).
void packed_gemv_blocks_portable(const PackedGemvProblem& p, int64_t first, int64_t last);
void packed_gemv_blocks_avx2(const PackedGemvProblem& p, int64_t first, int64_t last);
bool packed_gemv_avx2_available();

}  // namespace pbllm::kernels
