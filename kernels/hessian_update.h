// The Hessian update H <- beta H + alpha X^T X on the GPU as one cuBLAS GEMM:
// the calibration activations are read in their own dtype (fp16 / bf16 values
// are exact in float32, and so are their pairwise products), accumulated in
// float32 into the float32 Hessian, without an upcast copy of X.
#pragma once

#include <stdint.h>

namespace pbllm::kernels {

enum class GemmInput : int32_t { f32 = 0, f16 = 1, bf16 = 2 };

struct HessianUpdate {
  const void* inputs;  // X: [tokens, columns], row-major, on the device
  GemmInput type;
  int64_t tokens, columns;
  float alpha, beta;
  float* hessian;  // [columns, columns], on the device
};

// Checks the update, then runs it on `stream` (cudaStream_t) with
// `cublas_handle` (cublasHandle_t); a cuBLAS failure throws with its status.
void hessian_update(const HessianUpdate& update, void* cublas_handle, void* stream);

}  // namespace pbllm::kernels
