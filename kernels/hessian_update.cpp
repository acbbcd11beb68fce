#include "hessian_update.h"

#include <cublas_v2.h>

#include <climits>

#include "pbllm/core/check.h"

namespace pbllm::kernels {
namespace {

cudaDataType_t cuda_type(GemmInput type) {
  switch (type) {
    case GemmInput::f16:
      return CUDA_R_16F;
    case GemmInput::bf16:
      return CUDA_R_16BF;
    case GemmInput::f32:
      break;
  }
  return CUDA_R_32F;
}

void check_cublas(cublasStatus_t status, const char* what) {
  PBLLM_CHECK(status == CUBLAS_STATUS_SUCCESS, "hessian_update: ", what, " failed: ", cublasGetStatusName(status),
              " (", cublasGetStatusString(status), ")");
}

}  // namespace

void hessian_update(const HessianUpdate& u, void* cublas_handle, void* stream) {
  PBLLM_CHECK(u.inputs && u.hessian && cublas_handle, "hessian_update: null pointer");
  PBLLM_CHECK(u.tokens > 0 && u.columns > 0 && u.tokens <= INT_MAX && u.columns <= INT_MAX,
              "hessian_update: ", u.tokens, " x ", u.columns, " inputs are outside cuBLAS's int sizes");
  auto handle = static_cast<cublasHandle_t>(cublas_handle);
  // LibTorch's handle comes bound to its current stream and to Torch's own
  // workspace; cublasSetStream resets the workspace to cuBLAS's default pool,
  // allocated outside Torch's caching allocator (invisible to the peak-memory
  // figure, an OOM where the allocator holds most of the GPU). So rebind only
  // for a caller that passes another stream (pbllm passes Torch's current one).
  cudaStream_t bound = nullptr;
  check_cublas(cublasGetStream(handle, &bound), "cublasGetStream");
  if (bound != static_cast<cudaStream_t>(stream))
    check_cublas(cublasSetStream(handle, static_cast<cudaStream_t>(stream)), "cublasSetStream");
  // cuBLAS is column-major: row-major X [tokens, columns] is the column-major
  // matrix A = X^T [columns, tokens] with leading dimension `columns`, and
  // X^T X = A A^T, a GEMM of A with its own transpose. (H is symmetric, so
  // its storage order does not matter.) CUBLAS_COMPUTE_32F: float32
  // products and sums; with fp16 / bf16 inputs cuBLAS still uses tensor cores.
  const int n = static_cast<int>(u.columns), k = static_cast<int>(u.tokens);
  const cudaDataType_t type = cuda_type(u.type);
  check_cublas(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_T, n, n, k, &u.alpha, u.inputs, type, n, u.inputs, type, n,
                            &u.beta, u.hessian, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
}

}  // namespace pbllm::kernels
