// The two quantizers of GPTQ-PB (docs/DESIGN.md, "The GPTQ-PB method" 2 and 5).
// Calibration runs once per Linear with LibTorch ops on the weight's device
// (as the reference, so the parameters are the same floats); the column loop
// reads them through the plain-pointer views of kernels/gptq_pb_phases.h.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "gptq_pb_phases.h"
#include "pbllm/core/low_bit_methods.h"

namespace pbllm::quant {

// High-bit quantizer: per row, asymmetric, range [min(row, 0), max(row, 0)].
class HighBitQuantizer {
 public:
  // W: [rows, cols] float32. `salient` (optional, bool [rows, cols]): take the
  // range from the salient entries only (a correction of the reference, which
  // uses every weight of the row).
  void calibrate(const at::Tensor& W, int bits, const at::Tensor& salient = at::Tensor());
  kernels::HighBitParams params() const;
  const at::Tensor& scale() const { return scale_; }  // float32 [rows]
  const at::Tensor& zero() const { return zero_; }    // float32 [rows], integers in 0..2^bits - 1

 private:
  at::Tensor scale_, zero_;  // float32 [rows]
  float maxq_ = 255;
};


// Low-bit quantizer: parameters per (column group, row).
class LowBitQuantizer {
 public:
  struct Options {
    LowBitMethod method = LowBitMethod::xnor;
    // Correction: xnor / sign statistics over the binarized entries only; the
    // reference averages W * binarized over all of the group's columns.
    bool statistics_over_binarized_only = false;
    // Correction: 2bit / 4bit zero points from each row's own scale; the
    // reference divides every row by one row's scale.
    bool zero_point_per_row = false;
  };
  LowBitQuantizer(Options options, int64_t rows, int64_t groups, const at::TensorOptions& tensor_options);

  // W_group: [rows, group columns] float32; binarized: bool, same shape.
  void calibrate(const at::Tensor& W_group, const at::Tensor& binarized, int64_t group);
  // The parameters of one column group.
  kernels::LowBitParams params(int64_t group) const;
  // float32 [groups, rows]; those the method does not use are zeros.
  const at::Tensor& mean() const { return mean_; }
  const at::Tensor& scale() const { return scale_; }
  const at::Tensor& zero() const { return zero_; }
  float maxq() const { return maxq_; }

 private:
  Options options_;
  int64_t rows_;
  float maxq_ = 0;
  at::Tensor mean_, scale_, zero_;  // float32 [groups, rows]
};

}  // namespace pbllm::quant
