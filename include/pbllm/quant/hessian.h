// H = 2/n * sum of X^T X over the calibration sequences seen so far, kept as
// the reference keeps it: H <- H * n_old / n + (sqrt(2 / n) X)^T (sqrt(2 / n) X).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace pbllm::quant {

// The FLOPs of adding `rows` rows of `columns` to a Hessian on `device`, as
// the update does them: on a GPU X^T X as one GEMM; on the CPU its lower
// triangle by blocks of kGramBlock columns (about half), mirrored.
double hessian_update_flops(double rows, int64_t columns, const at::Device& device = at::kCPU);
inline constexpr int64_t kGramBlock = 256;

class HessianAccumulator {
 public:
  // The Hessian lives on `device` (the activations' device). On the CPU the
  // inputs are upcast and scaled as the reference does, and X^T X is a
  // symmetric rank-k update (the reference's one GEMM where the Hessian is at
  // most kGramBlock wide); on a GPU one cuBLAS GEMM reads fp16 / bf16 inputs
  // as they are, accumulating in float32.
  HessianAccumulator(int64_t columns, const at::Device& device = at::kCPU);
  HessianAccumulator(const HessianAccumulator&) = delete;  // copies would share the storage, not the state
  HessianAccumulator& operator=(const HessianAccumulator&) = delete;
  // input: [batch, seq, columns] or [seq, columns]; each batch row counts as one sequence.
  void add(const at::Tensor& input);
  const at::Tensor& hessian() const;  // exactly symmetric; not to be called from two threads at once
  int64_t sequences() const { return sequences_; }

 private:
  // float32 [columns, columns]; on the CPU above kGramBlock columns the adds
  // keep the lower triangle, and hessian() copies it to the upper one.
  mutable at::Tensor hessian_;
  mutable bool upper_stale_ = false;
  int64_t sequences_ = 0;
};

}  // namespace pbllm::quant
