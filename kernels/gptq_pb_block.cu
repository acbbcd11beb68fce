// The fused GPTQ-PB block kernel: one thread per row, the block's U in shared
// memory, the row's running weights in a private buffer.
//
// Tricks, and why:
// - Rows are independent inside a block (the error of column i only moves
//   columns > i of the same row), so a row needs no communication: one thread
//   per row, no warp intrinsics, and the host emulation runs the same phases.
// - U's block is read by every row for every column: it is staged once per
//   CUDA block in shared memory (phase 1), after which each thread reads it
//   with a broadcast (all threads read the same u_row[j] at the same time).
// - The quantized values, errors and losses are written once per element;
//   the O(rows * n * right) update of the columns right of the block is left
//   to one cuBLAS GEMM by the caller, where the flops are.
// - Compiled with --fmad=false: the CPU path computes w - e * u with two
//   roundings, and the GPU must pick the same signs near ties.
#include <cuda_runtime.h>

#include "gptq_pb_block.h"
#include "pbllm/core/check.h"

namespace pbllm::kernels {
namespace {

__global__ void gptq_pb_block_kernel(BlockProblem problem) {
  extern __shared__ float u_block[];
  load_u_block(problem, u_block, static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x));
  __syncthreads();
  float buffer[kGptqPbMaxBlocksize];  // the row's block; in local memory, cached in L1
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row < problem.rows) walk_row(problem, u_block, row, buffer);
}

}  // namespace

void gptq_pb_block(const BlockProblem& problem, void* stream) {
  check_block_problem(problem);
  const size_t shared_bytes = static_cast<size_t>(problem.n * problem.n) * sizeof(float);
  // Above 48 KiB of dynamic shared memory a kernel must opt in, on each GPU
  // it runs on (the attribute is per device), hence on every launch: it is cheap.
  const cudaError_t opt_in = cudaFuncSetAttribute(gptq_pb_block_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                  static_cast<int>(shared_bytes));
  PBLLM_CHECK(opt_in == cudaSuccess, "gptq_pb_block: cannot reserve shared memory: ", cudaGetErrorString(opt_in));
  const auto blocks = static_cast<unsigned>((problem.rows + kGptqPbThreadsPerBlock - 1) / kGptqPbThreadsPerBlock);
  gptq_pb_block_kernel<<<blocks, kGptqPbThreadsPerBlock, shared_bytes, static_cast<cudaStream_t>(stream)>>>(problem);
  const cudaError_t status = cudaGetLastError();
  PBLLM_CHECK(status == cudaSuccess, "gptq_pb_block: launch failed: ", cudaGetErrorString(status));
}

}  // namespace pbllm::kernels
