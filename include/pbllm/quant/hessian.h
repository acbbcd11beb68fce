// H = 2/n * sum of X^T X over the calibration sequences seen so far, kept as
// the reference keeps it: H <- H * n_old / n + (sqrt(2 / n) X)^T (sqrt(2 / n) X).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace pbllm::quant {

// The FLOPs of adding `rows` rows of `columns` to a Hessian: X^T X as one GEMM.
double hessian_update_flops(double rows, int64_t columns);

class HessianAccumulator {
 public:
  // The Hessian lives on `device` (the activations' device). On the CPU the
  // inputs are upcast and multiplied as the reference does; on a GPU one cuBLAS
  // GEMM reads fp16 / bf16 inputs as they are, accumulating in float32.
  HessianAccumulator(int64_t columns, const at::Device& device = at::kCPU);
  // input: [batch, seq, columns] or [seq, columns]; each batch row counts as one sequence.
  void add(const at::Tensor& input);
  const at::Tensor& hessian() const { return hessian_; }
  int64_t sequences() const { return sequences_; }

 private:
  at::Tensor hessian_;  // float32 [columns, columns]
  int64_t sequences_ = 0;
};

}  // namespace pbllm::quant
