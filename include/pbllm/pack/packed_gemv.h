// y = W x from a packed Linear without decoding it: the layout of
// kernels/packed_gemv.h built once from a PackedLinear (xnor or sign, 8-bit
// or narrower salient codes), then rows split between threads. The host side
// of the kernel: check the problem, size the buffers, run.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "pbllm/pack/packed_linear.h"

namespace pbllm::pack {

enum class GemvKernel { best, portable, avx2 };

class PackedGemv {
 public:
  // Whether the kernel takes this Linear (1-bit low codes, high_bit <= 8,
  // <= 65536 columns).
  static bool supports(const PackedLinear& packed);
  explicit PackedGemv(const PackedLinear& packed);
  // Whether this CPU runs the AVX2 kernel (else `best` is the portable one).
  static bool avx2_available();

  // x: float32 [columns] -> float32 [rows].
  at::Tensor operator()(const at::Tensor& x, GemvKernel kernel = GemvKernel::best) const;
  int64_t rows() const { return rows_; }
  int64_t columns() const { return columns_; }
  // Bytes this layout holds (the resident weights of a generating model).
  int64_t resident_bytes() const;

 private:
  int64_t rows_ = 0, columns_ = 0, group_columns_ = 0, groups_ = 0, group_triplets_ = 0;
  at::ScalarType dtype_ = at::kFloat;
  HighGrid high_grid_ = HighGrid::zero_point;
  at::Tensor signs_, salient_, salient_start_, one_value_, zero_value_, high_scale_, high_zero_;
  at::Tensor zero_sign_entries_, zero_sign_deltas_;  // xnor weights at their mean, and value - zero_value
};

}  // namespace pbllm::pack
