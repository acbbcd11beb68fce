// y = W x straight from a 1-bit packed Linear (xnor or sign non-salient
// weights, 8-bit salient ones), one row range per call: the CPU kernel that
// generation runs one token at a time (pack/packed_gemv.h is its host side).
//
// The layout (built once from the packed checkpoint, ~3.4 bits per weight at
// 10% salient):
//   signs    [rows, words] uint64: bit c set where a non-salient weight has
//            code 1 (xnor +1, sign 1); clear at salient weights;
//   salient  the salient weights' columns (uint16) and 8-bit codes, row-major;
//            row r's from salient_start[r]. A list, not a bitmap: walking a
//            bitmap's set bits costs a mispredicted branch per word, a list is
//            read 8 at a time (a gather of x).
// With one value per code and group, v1 = value(1) and v0 = value(0) (xnor:
// mean + alpha, mean - alpha), a row's non-salient part is
//   sum_g v1[g] * P_g + v0[g] * N_g,   P_g = sum of x over the group's code-1 weights,
//                                       N_g = X_g - P_g - S_g,
// with X_g = sum of x over the group (once per x, not per row) and S_g the sum
// of x over the group's salient weights. So only P needs a pass over the
// bits: the AVX2 kernel turns each byte of signs into an 8-lane mask over x;
// the portable one looks each byte up in a table of the sums of x over all
// 256 subsets of those 8 columns (byte_sums, built once per x: 256 additions
// per 8 columns, shared by every row). The salient weights (~10%) add h * x,
// h = the weight's exact value
// (scale * (code - zero), rounded through the checkpoint's dtype as decoding
// does), so the result is the decoded matrix's product up to summation order.
#pragma once

#include <stdint.h>

namespace pbllm::kernels {

// How a salient weight's value is rounded (the checkpoint's dtype).
enum class ValueRounding : int32_t { none = 0, half = 1, bfloat16 = 2 };

struct PackedGemvProblem {
  int64_t rows, columns;
  int64_t words;             // 64-column words per row: ceil(columns / 64)
  int64_t group_words;       // words per parameter group (a group is a whole number of words)
  int64_t groups;
  const uint64_t* signs;            // [rows, words]
  const uint16_t* salient_columns;  // salient weights, row-major
  const uint8_t* codes;             // their codes
  const int64_t* salient_start;     // [rows + 1]
  const float* one_value;    // [groups, rows]: value of code 1
  const float* zero_value;   // [groups, rows]: value of code 0
  const float* high_scale;   // [rows]
  const float* high_zero;    // [rows]
  ValueRounding rounding;
  const float* x;            // [words * 64], zero past `columns`
  const float* group_sums;   // [groups]: sum of x over each group
  const float* byte_sums;    // portable kernel: [words * 8][256], entry b of chunk j = sum of x[8j + i] over the bits i of b
  float* y;                  // [rows]
};

// byte_sums for x (words * 64 floats) into out (words * 8 * 256 floats).
void packed_gemv_byte_sums(const float* x, int64_t words, float* out);

// Rows [first, last). The portable one runs anywhere; the AVX2 one needs a
// CPU with AVX2 and F16C (packed_gemv_avx2_available()).
void packed_gemv_rows_portable(const PackedGemvProblem& p, int64_t first, int64_t last);
void packed_gemv_rows_avx2(const PackedGemvProblem& p, int64_t first, int64_t last);
bool packed_gemv_avx2_available();

}  // namespace pbllm::kernels
