// The part of a packed GEMV row that both the portable and the AVX2 kernel
// share: the salient weights, walked bit by bit, and the row's sum.
#pragma once

#include <string.h>

#include "packed_gemv.h"

namespace pbllm::kernels {

// A float rounded to the nearest half / bfloat16 (ties to even) and back, as
// c10::Half / c10::BFloat16 round: the value the checkpoint holds.
inline float round_to_bfloat16(float value) {
  uint32_t bits;
  memcpy(&bits, &value, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return value;  // NaN stays NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  bits &= 0xffff0000u;
  memcpy(&value, &bits, 4);
  return value;
}
float round_to_half(float value);  // packed_gemv.cpp (through c10's conversion would pull Torch in)

inline float rounded(float value, ValueRounding rounding) {
  switch (rounding) {
    case ValueRounding::half:
      return round_to_half(value);
    case ValueRounding::bfloat16:
      return round_to_bfloat16(value);
    case ValueRounding::none:
      break;
  }
  return value;
}

// The value of a salient weight: its grid value, rounded as the checkpoint holds it.
inline float salient_value(const PackedGemvProblem& p, int64_t row, uint8_t code) {
  return rounded(p.high_scale[row] * (static_cast<float>(code) - p.high_zero[row]), p.rounding);
}

// Salient weights [from, to) of row `row`: returns their sum of h * x and adds
// their x to salient_x[group].
inline float salient_part(const PackedGemvProblem& p, int64_t row, int64_t from, int64_t to, float* salient_x) {
  const int64_t group_columns = p.group_words * 64;
  float total = 0;
  for (int64_t k = from; k < to; ++k) {
    const float x = p.x[p.salient_columns[k]];
    total += salient_value(p, row, p.codes[k]) * x;
    salient_x[p.salient_columns[k] / group_columns] += x;
  }
  return total;
}

// Each group's sum of x over the row's code-1 weights: one lookup per 8 columns.
inline void code_one_sums(const PackedGemvProblem& p, int64_t row, float* ones) {
  const uint64_t* signs = p.signs + row * p.words;
  for (int64_t g = 0; g < p.groups; ++g) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;  // four chains hide the add latency
    const int64_t end = p.words < (g + 1) * p.group_words ? p.words : (g + 1) * p.group_words;
    for (int64_t word = g * p.group_words; word < end; ++word) {
      const uint64_t bits = signs[word];
      const float* table = p.byte_sums + word * 8 * 256;
      s0 += table[0 * 256 + (bits & 0xff)] + table[4 * 256 + ((bits >> 32) & 0xff)];
      s1 += table[1 * 256 + ((bits >> 8) & 0xff)] + table[5 * 256 + ((bits >> 40) & 0xff)];
      s2 += table[2 * 256 + ((bits >> 16) & 0xff)] + table[6 * 256 + ((bits >> 48) & 0xff)];
      s3 += table[3 * 256 + ((bits >> 24) & 0xff)] + table[7 * 256 + (bits >> 56)];
    }
    ones[g] = (s0 + s1) + (s2 + s3);
  }
}

// y[row] from each group's sum over code-1 weights (ones[g]) and over salient ones.
inline float finish_row(const PackedGemvProblem& p, int64_t row, const float* ones, const float* salient_x,
                        float salient_total) {
  float y = salient_total;
  for (int64_t g = 0; g < p.groups; ++g) {
    const float zeros = p.group_sums[g] - ones[g] - salient_x[g];
    y += p.one_value[g * p.rows + row] * ones[g] + p.zero_value[g * p.rows + row] * zeros;
  }
  return y;
}

}  // namespace pbllm::kernels
