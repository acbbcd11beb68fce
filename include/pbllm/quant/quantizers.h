// The two quantizers of GPTQ-PB (DESIGN.md, "The GPTQ-PB method" 2 and 5).
// Calibration runs once per Linear with LibTorch ops (as the reference, so
// the parameters are the same floats); quantize() is the scalar function the
// column loop calls per weight.
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace pbllm::quant {

// High-bit quantizer: per row, asymmetric, range [min(row, 0), max(row, 0)].
class HighBitQuantizer {
 public:
  // W: [rows, cols] float32. `salient` (optional, bool [rows, cols]): take the
  // range from the salient entries only (a correction of the reference, which
  // uses every weight of the row).
  void calibrate(const at::Tensor& W, int bits, const at::Tensor& salient = at::Tensor());

  float quantize(float w, int64_t row) const {
    const float s = scale_[row], z = zero_[row];
    const float code = std::fmin(std::fmax(std::nearbyint(w / s) + z, 0.0f), maxq_);
    return s * (code - z);
  }
  float scale(int64_t row) const { return scale_[row]; }
  float zero(int64_t row) const { return zero_[row]; }
  float maxq() const { return maxq_; }

 private:
  std::vector<float> scale_, zero_;
  float maxq_ = 255;
};

enum class LowBitMethod { xnor, sign, no, two_bit, four_bit, prune };
LowBitMethod low_bit_method_from_name(const std::string& name);  // "xnor", "sign", "no", "2bit", "4bit", "prune"
std::string low_bit_method_name(LowBitMethod method);

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
  LowBitQuantizer(Options options, int64_t rows, int64_t groups);

  // W_group: [rows, group columns] float32; binarized: bool, same shape.
  void calibrate(const at::Tensor& W_group, const at::Tensor& binarized, int64_t group);

  float quantize(float w, int64_t row, int64_t group) const {
    const size_t at = static_cast<size_t>(group * rows_ + row);
    switch (options_.method) {
      case LowBitMethod::xnor: {
        const float centred = w - mean_[at];
        const float sign = centred > 0 ? 1.0f : (centred < 0 ? -1.0f : 0.0f);  // torch.sign: 0 at 0
        return sign * scale_[at] + mean_[at];
      }
      case LowBitMethod::sign:
        return (w > 0 ? 1.0f : 0.0f) * scale_[at];
      case LowBitMethod::two_bit:
      case LowBitMethod::four_bit: {
        const float s = scale_[at], z = zero_[at];
        const float code = std::fmin(std::fmax(std::nearbyint(w / s) + z, 0.0f), maxq_);
        return s * (code - z);
      }
      case LowBitMethod::no:
        return w;
      case LowBitMethod::prune:
        return 0.0f;
    }
    return w;
  }

 private:
  Options options_;
  int64_t rows_;
  float maxq_ = 0;
  std::vector<float> mean_, scale_, zero_;  // [group * rows + row]
};

}  // namespace pbllm::quant
