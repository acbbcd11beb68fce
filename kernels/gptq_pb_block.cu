// The fused GPTQ-PB block kernel: each row walked by `lanes` threads of one
// warp, the block's U in shared memory, each lane's columns of the row in a
// private buffer.
//
// Tricks, and why:
// - Rows are independent inside a block (the error of column i only moves
//   columns > i of the same row), so rows need no communication, and one
//   thread per row would do. But a 4096-row Linear is then 4096 threads: 32
//   blocks on a 132-SM H100, most of the GPU idle. So a row is split over
//   lanes (gptq_pb_phases.h): lane l owns columns l, l + lanes, ...; the lane
//   owning column i quantizes it and puts its error in shared memory, one
//   __syncwarp, and every lane applies it to its own later columns. Each
//   column sees the same operations in the same order for any number of
//   lanes, so every shape gives the same bits (tested on the host emulation),
//   and choose_block_launch picks the lanes that fill the GPU.
// - A row's lanes are consecutive threads of one warp: the barrier between a
//   column's quantization and its error push is a __syncwarp, not a
//   __syncthreads, and the error slots are double-buffered by the column's
//   parity so that one barrier a column suffices. Spare threads of the last
//   block (rows past the end) still reach every barrier.
// - Lane l's columns sit at l + k * lanes: consecutive lanes read consecutive
//   words of U's row and of the weights (no bank conflicts, coalesced loads),
//   and the rows of a warp read the same U word at once (a broadcast).
// - U's block is read by every row for every column: it is staged once per
//   CUDA block in shared memory (phase 1).
// - The quantized values, errors and losses are written once per element;
//   the O(rows * n * right) update of the columns right of the block is left
//   to one cuBLAS GEMM by the caller, where the flops are.
// - Compiled with --fmad=false: the CPU path computes w - e * u with two
//   roundings, and the GPU must pick the same signs near ties.
#include <cuda_runtime.h>

#include <mutex>
#include <vector>

#include "gptq_pb_block.h"
#include "pbllm/core/check.h"

namespace pbllm::kernels {
namespace {

__global__ void gptq_pb_block_kernel(BlockProblem problem, int lane_shift) {
  extern __shared__ double shared_memory[];
  const int threads = static_cast<int>(blockDim.x), thread = static_cast<int>(threadIdx.x);
  const BlockShared shared = carve_block_shared(shared_memory, threads >> lane_shift);
  load_u_block(problem, shared.u_block, thread, threads);
  __syncthreads();
  float buffer[kGptqPbMaxBlocksize];  // the lane's columns; in local memory, cached in L1
  const BlockThread me = block_thread(problem, blockIdx.x, thread, threads, lane_shift);
  start_walk(problem, me, shared, buffer);
  for (int64_t i = 0; i < problem.n; ++i) {
    quantize_step(problem, me, shared, i, buffer);
    __syncwarp();
    apply_step(problem, me, shared, i, buffer);
  }
  finish_walk(problem, me, shared);
}

void check_cuda(cudaError_t status, const char* what) {
  PBLLM_CHECK(status == cudaSuccess, "gptq_pb_block: ", what, ": ", cudaGetErrorString(status));
}

// The current GPU's limits, asked once per device.
GpuLimits current_gpu_limits() {
  static std::mutex mutex;
  static std::vector<GpuLimits> known;
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cannot find the current GPU");
  const std::lock_guard<std::mutex> lock(mutex);
  if (known.size() <= static_cast<size_t>(device)) known.resize(device + 1, GpuLimits{0, 0});
  if (known[device].multiprocessors == 0) {
    cudaDeviceProp properties{};
    check_cuda(cudaGetDeviceProperties(&properties, device), "cannot read the GPU's properties");
    known[device] = {properties.multiProcessorCount, static_cast<int64_t>(properties.sharedMemPerMultiprocessor),
                     properties.maxThreadsPerMultiProcessor, properties.maxBlocksPerMultiProcessor};
  }
  return known[device];
}

}  // namespace

BlockLaunch gptq_pb_block_launch(const BlockProblem& problem) {
  return choose_block_launch(problem, current_gpu_limits());
}

void gptq_pb_block(const BlockProblem& problem, void* stream) {
  check_block_problem(problem);
  gptq_pb_block(problem, gptq_pb_block_launch(problem), stream);
}

void gptq_pb_block(const BlockProblem& problem, const BlockLaunch& launch, void* stream) {
  check_block_problem(problem);
  check_block_launch(launch);
  const int64_t shared_bytes = block_shared_bytes(problem, launch);
  // Above 48 KiB of dynamic shared memory a kernel must opt in, on each GPU
  // it runs on (the attribute is per device), hence on every launch: it is cheap.
  check_cuda(cudaFuncSetAttribute(gptq_pb_block_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(shared_bytes)),
             "cannot reserve shared memory");
  const auto blocks = static_cast<unsigned>(launch.blocks(problem.rows));
  gptq_pb_block_kernel<<<blocks, launch.threads_per_block, static_cast<size_t>(shared_bytes),
                         static_cast<cudaStream_t>(stream)>>>(problem, launch.lane_shift());
  check_cuda(cudaGetLastError(), "launch failed");
}

}  // namespace pbllm::kernels
