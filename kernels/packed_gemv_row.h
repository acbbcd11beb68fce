// What the portable and the AVX2 packed GEMV share: the salient weights one
// at a time, the code-1 sums by scalar lookups (the layout's reference), a row's final sum, and the
// loop over a range of row blocks.
#pragma once

#include <string.h>

#include <algorithm>
#include <vector>

#include "packed_gemv.h"

namespace pbllm::kernels {

// A half's bits as a float, exact for every finite half: the 15 bits of
// exponent and mantissa shifted into a float's place read as 2^-112 times the
// value (subnormal halves land on float subnormals), the product by 2^112 is
// exact; the sign is put back. (clang 14 has no _Float16 on x86.)
inline float half_bits_to_float(uint32_t half) {
  uint32_t bits = (half & 0x7fffu) << 13;
  float value;
  memcpy(&value, &bits, 4);
  value *= 0x1p112f;
  memcpy(&bits, &value, 4);
  bits |= (half & 0x8000u) << 16;
  memcpy(&value, &bits, 4);
  return value;
}

// A salient weight's value from its word.
inline float salient_value(const PackedGemvProblem& p, int64_t row, uint32_t word) {
  const uint32_t high = word >> 16;
  switch (p.salient_high) {
    case SalientHigh::half:
      return half_bits_to_float(high);
    case SalientHigh::bfloat16: {
      const uint32_t bits = high << 16;
      float value;
      memcpy(&value, &bits, 4);
      return value;
    }
    case SalientHigh::affine_code:
      return static_cast<float>(high) * p.high_scale[row] + p.high_zero[row];
    case SalientHigh::code:
      break;
  }
  return p.high_scale[row] * (static_cast<float>(high) - p.high_zero[row]);
}

// Salient weights [from, to) of row `row`: returns their sum of h * x and adds
// their x to salient_x[group].
inline float salient_part(const PackedGemvProblem& p, int64_t row, int64_t from, int64_t to, float* salient_x) {
  float total = 0;
  for (int64_t k = from; k < to; ++k) {
    const uint32_t column = p.salient[k] & 0xffffu;
    const float x = p.x[column];
    total += salient_value(p, row, p.salient[k]) * x;
    salient_x[column / p.group_columns] += x;
  }
  return total;
}

// The 24 code bits of triplet t (and 8 bits of the next one).
inline uint32_t triplet_word(const uint8_t* block_signs, int64_t t) {
  uint32_t word;
  memcpy(&word, block_signs + t * kGemvTripletBytes, 4);
  return word;
}

// Each group's sum of x over the code-1 weights of the 8 rows of `block`:
// ones[g * 8 + i] for row 8 * block + i, one table lookup per 3 columns.
inline void code_one_sums(const PackedGemvProblem& p, int64_t block, float* ones) {
  const uint8_t* signs = p.signs + block * p.block_bytes;
  for (int64_t g = 0; g < p.groups; ++g) {
    float sum[kGemvBlockRows] = {};
    for (int64_t t = g * p.group_triplets; t < (g + 1) * p.group_triplets; ++t) {
      const uint32_t bits = triplet_word(signs, t);
      const float* table = p.triplet_sums + t * 8;
      for (int i = 0; i < kGemvBlockRows; ++i) sum[i] += table[(bits >> (3 * i)) & 7u];
    }
    for (int i = 0; i < kGemvBlockRows; ++i) ones[g * kGemvBlockRows + i] = sum[i];
  }
}

// y[row] from each group's sum over code-1 weights (ones[g * 8 + lane], lane
// = row % 8, as code_one_sums leaves them) and over salient ones.
inline float finish_row(const PackedGemvProblem& p, int64_t row, const float* ones, const float* salient_x,
                        float salient_total) {
  float y = salient_total;
  for (int64_t g = 0; g < p.groups; ++g) {
    const float one = ones[g * kGemvBlockRows + row % kGemvBlockRows];
    const float zeros = p.group_sums[g] - one - salient_x[g];
    y += p.one_value[g * p.rows + row] * one + p.zero_value[g * p.rows + row] * zeros;
  }
  return y;
}

// Row blocks [first, last): one_sums(block, ones) fills the block's code-1
// sums, salient(row, salient_x) returns a row's sum of h * x over its salient
// weights and adds their x to salient_x[group].
template <typename OneSums, typename Salient>
void gemv_blocks(const PackedGemvProblem& p, int64_t first, int64_t last, OneSums&& one_sums, Salient&& salient) {
  std::vector<float> ones(p.groups * kGemvBlockRows), salient_x(p.groups);
  for (int64_t block = first; block < last; ++block) {
    one_sums(block, ones.data());
    const int64_t end_row = std::min(p.rows, (block + 1) * kGemvBlockRows);
    for (int64_t row = block * kGemvBlockRows; row < end_row; ++row) {
      std::fill(salient_x.begin(), salient_x.end(), 0.0f);
      const float salient_total = salient(row, salient_x.data());
      p.y[row] = finish_row(p, row, ones.data(), salient_x.data(), salient_total);
    }
  }
}

}  // namespace pbllm::kernels
