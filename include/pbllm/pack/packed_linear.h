// One partially binarized Linear in its packed form (docs/DESIGN.md, "The
// packed PB format"): the salient mask (mask_codec.h), the low-bit codes of
// the non-salient weights and the high-bit codes of the salient ones, each in
// row-major order of the weights they belong to, and the quantizers' per-row
// and per-(group, row) parameters in a form that makes decoding exact: the
// float32 values the quantizer used (decoding repeats its arithmetic:
// kernels/gptq_pb_phases.h), or where that is smaller, values in the
// checkpoint's dtype that give exactly the same result (xnor's two values
// per (group, row); a 16-bit row range that reproduces the high-bit grid).
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <map>
#include <vector>
#include <memory>
#include <string>

#include "pbllm/core/low_bit_methods.h"
#include "pbllm/pack/bit_stream.h"
#include "pbllm/pack/mask_codec.h"

namespace pbllm::pack {

// How a row's high-bit codes map to values (float32 arithmetic, then the
// checkpoint's dtype). zero_point: GPTQ-PB's grid, scale * (code - zero) with
// an integer zero point. affine: PB-LLM QAT's weight_quant_8bit,
// code * scale + offset: its offset is round(min) or min, rarely a multiple
// of the step, so no integer zero point gives the same floats.
enum class HighGrid { zero_point, affine };
const char* high_grid_name(HighGrid grid);
HighGrid high_grid_from_name(const std::string& name, const std::string& where);

// What GPTQ-PB (or pbllm-qat) produced for one Linear, as the encoder takes it.
struct QuantizedLinear {
  at::Tensor weight;                         // the quantized values, float32 [rows, columns]
  at::Tensor salient;                        // bool [rows, columns]
  HighGrid high_grid = HighGrid::zero_point;
  at::Tensor high_scale, high_zero;          // float32 [rows]; affine: high_zero holds the offsets
  at::Tensor low_mean, low_scale, low_zero;  // float32 [groups, rows]
  LowBitMethod method = LowBitMethod::xnor;
  int high_bit = 8;
  int64_t groupsize = -1;                    // columns per group, -1: whole rows
  at::ScalarType dtype = at::kFloat;         // the checkpoint's: decoded values are rounded through it
};

struct PackedLinear {
  int64_t rows = 0, columns = 0, group_columns = 0;  // group_columns: columns per (group, row) parameter set
  LowBitMethod method = LowBitMethod::xnor;
  int high_bit = 8;
  HighGrid high_grid = HighGrid::zero_point;
  at::ScalarType dtype = at::kFloat;
  int rice_k = 0;
  int64_t salient = 0;
  // Tensors, as stored (CPU; views into the mapped file after loading).
  at::Tensor mask, mask_index;            // uint8 [bytes], int64 [blocks + 1, 2]
  at::Tensor low_codes;                   // uint8 codes, or the values (dtype) for "no", or empty
  at::Tensor high_codes;                  // uint8, high_bit bits per salient weight
  // The high-bit grid per row: float32 [rows] and, for a zero_point grid,
  // uint8 (high_bit <= 8) or int32 [rows], stored or derived at load from
  // high_range; for an affine grid float32 offsets [rows].
  at::Tensor high_scale, high_zero, high_offset;
  at::Tensor high_range;                  // dtype [rows, 2]: (low, high) whose grid is exactly high_scale / high_zero
  at::Tensor low_scale, low_zero;         // float32 [groups, rows], those the method has
  at::Tensor low_values;                  // xnor: dtype [groups, rows, 2], the values of codes 0 (-1) and 1 (+1)
  at::Tensor zero_signs;                  // int64 [n]: xnor weights equal to their mean (sign 0), row-major
  at::Tensor zero_sign_values;            // dtype [n]: their values (the mean, as the checkpoint holds it)
  std::string name;                       // the weight's name, for errors

  int64_t groups() const { return (columns + group_columns - 1) / group_columns; }
  int64_t weights() const { return rows * columns; }
  // The stored tensors under their suffixes ("mask", "low_codes", ...),
  // undefined and derived ones left out.
  std::map<std::string, at::Tensor> tensors() const;
  // Sum of the stored tensors' bytes.
  int64_t stored_bytes() const;
  MaskView mask_view() const;
};

// Encodes; every value is checked to decode back to itself bit for bit (else
// a pbllm::Error naming `name` and the entry).
PackedLinear encode_linear(const QuantizedLinear& linear, const std::string& name);

// Checks a loaded PackedLinear's tensors against its fields (shapes, dtypes,
// stream lengths, mask index): one error per problem, naming the tensor.
// Derives high_scale / high_zero from high_range when the file stores that.
void check_packed_linear(PackedLinear& packed);

// Walks row block `block` in storage order: on_low(row, begin, end) for each
// run of non-salient columns of a row (their low codes follow one another in
// low_codes), on_salient(row, column) for each salient weight (the next high
// code). The decoder and the GEMV layout both read the codes this way.
template <typename OnLow, typename OnSalient>
void walk_block(const PackedLinear& p, int64_t block, std::vector<int64_t>& positions, OnLow&& on_low,
                OnSalient&& on_salient) {
  p.mask_view().block_positions(block, positions);
  const int64_t first_row = block * kMaskRowsPerBlock;
  const int64_t last_row = std::min(p.rows, first_row + kMaskRowsPerBlock);
  size_t next = 0;
  for (int64_t row = first_row; row < last_row; ++row) {
    const int64_t row_start = (row - first_row) * p.columns;
    int64_t column = 0;
    for (; next < positions.size() && positions[next] < row_start + p.columns; ++next) {
      const int64_t salient = positions[next] - row_start;
      if (salient > column) on_low(row, column, salient);
      on_salient(row, salient);
      column = salient + 1;
    }
    if (column < p.columns) on_low(row, column, p.columns);
  }
}

// Values as decoding gives them (each rounded through the checkpoint's dtype):
// stored low code `code` of (group, row); the i-th xnor weight listed in
// zero_signs; high code `code` of a row whose grid has parameters (scale,
// zero or offset: high_grid_parameter).
float low_code_value(const PackedLinear& p, int64_t group, int64_t row, uint32_t code);
float zero_sign_value(const PackedLinear& p, int64_t i);
float high_code_value(HighGrid grid, float scale, float zero_or_offset, uint32_t code, at::ScalarType dtype);
// Each row's second grid parameter as float32 [rows]: the zero points or the offsets.
at::Tensor high_grid_parameter(const PackedLinear& p);
// The bits of `value` as a half / bfloat16 (dtype), rounded to nearest even.
uint16_t bits_of_value(float value, at::ScalarType dtype);
// Cursors over the low / high codes from code `index` on.
CodeCursor low_code_cursor(const PackedLinear& p, int64_t index);
CodeCursor high_code_cursor(const PackedLinear& p, int64_t index);

// The float32 weight [rows, columns], each value rounded through the
// checkpoint's dtype: equal bit for bit to the fake-quant checkpoint's values.
// Row blocks in parallel.
at::Tensor decode_linear(const PackedLinear& packed);

}  // namespace pbllm::pack
