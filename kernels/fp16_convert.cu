// float32 -> fp16 conversion on the device, a grid-stride loop.
//
// Why a kernel and not at::Tensor::to: loading keeps the checkpoint in host
// memory in its own dtype and converts on the GPU after the copy, so the host
// never materialises a second (fp16) copy of the weights.
#include "fp16_convert.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "pbllm/core/check.h"

namespace pbllm::kernels {
namespace {

// Each thread converts two adjacent values when it can: a __half2 store is one
// 32-bit transaction instead of two 16-bit ones.
__global__ void convert_f32_to_f16_kernel(const float* __restrict__ source, __half* __restrict__ destination,
                                          int64_t count) {
  const int64_t pairs = count / 2;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t pair = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; pair < pairs; pair += stride) {
    const float2 values = reinterpret_cast<const float2*>(source)[pair];
    reinterpret_cast<__half2*>(destination)[pair] = __floats2half2_rn(values.x, values.y);
  }
  // The odd last element, if any, goes to the first thread.
  if ((count & 1) && blockIdx.x == 0 && threadIdx.x == 0) destination[count - 1] = __float2half_rn(source[count - 1]);
}

}  // namespace

void convert_f32_to_f16(const float* source, uint16_t* destination, int64_t count, void* stream) {
  PBLLM_CHECK(count >= 0, "convert_f32_to_f16: negative count ", count);
  if (count == 0) return;
  PBLLM_CHECK(source != nullptr && destination != nullptr, "convert_f32_to_f16: null pointer");
  // float2 / __half2 accesses need 8- and 4-byte alignment.
  PBLLM_CHECK(reinterpret_cast<uintptr_t>(source) % 8 == 0 && reinterpret_cast<uintptr_t>(destination) % 4 == 0,
              "convert_f32_to_f16: pointers must be 8-byte (source) and 4-byte (destination) aligned");
  constexpr int kThreads = 256;
  const int64_t pairs = (count + 1) / 2;
  const int blocks = static_cast<int>(std::min<int64_t>((pairs + kThreads - 1) / kThreads, 65535));
  convert_f32_to_f16_kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      source, reinterpret_cast<__half*>(destination), count);
  const cudaError_t status = cudaGetLastError();
  PBLLM_CHECK(status == cudaSuccess, "convert_f32_to_f16: launch failed: ", cudaGetErrorString(status));
}

}  // namespace pbllm::kernels
