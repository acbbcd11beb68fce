// Host-facing entry of the fused GPTQ-PB block kernel (kernels/gptq_pb_block.cu)
// and its host emulation (kernels/gptq_pb_block_emulated.cpp). Both run the
// phases of kernels/gptq_pb_phases.h: each row walked by `lanes` threads, the
// U block in shared memory. The columns right of the block are updated by the
// caller with one GEMM (cuBLAS on the GPU).
#pragma once

#include <string>

#include "gptq_pb_phases.h"

namespace pbllm::kernels {

// A row's lanes keep their columns (n / lanes floats) in local memory and the
// U block (n x n floats, 64 KiB at 128) sits in shared memory.
constexpr int64_t kGptqPbMaxBlocksize = 128;
constexpr int kGptqPbMaxLanes = 32;  // a row's lanes are in one warp: they sync with __syncwarp

// The launch shape: threads per CUDA block (a multiple of 32, at most 256)
// and lanes per row (a power of two, at most 32); a CUDA block walks
// threads / lanes rows.
struct BlockLaunch {
  int threads_per_block = 128;
  int lanes_per_row = 1;
  int rows_per_block() const { return threads_per_block / lanes_per_row; }
  int64_t blocks(int64_t rows) const { return (rows + rows_per_block() - 1) / rows_per_block(); }
  int lane_shift() const {  // log2 of lanes_per_row
    int shift = 0;
    while ((1 << shift) < lanes_per_row) ++shift;
    return shift;
  }
};

// What the shape is chosen for: the GPU's multiprocessors, the shared memory
// one of them holds and its resident threads and blocks (cudaDeviceProp's
// multiProcessorCount, sharedMemPerMultiprocessor, maxThreadsPerMultiProcessor,
// maxBlocksPerMultiProcessor; the defaults are sm_80's and sm_90's: sm_86 has
// 1536 and 16, sm_89 1536 and 24, which a real launch reads from the device).
struct GpuLimits {
  int multiprocessors;
  int64_t shared_bytes_per_multiprocessor;
  int threads_per_multiprocessor = 2048;
  int blocks_per_multiprocessor = 32;
};
constexpr GpuLimits kH100Limits{132, 228 * 1024};  // H100 SXM; the host emulation's default GPU

// Dynamic shared memory of one CUDA block: the rows' losses and error slots, and U.
int64_t block_shared_bytes(const BlockProblem& problem, const BlockLaunch& launch);

// The shape for a problem on a GPU: the fewest lanes per row that give every
// multiprocessor as many threads as it can hold (its shared memory, threads
// and blocks per multiprocessor, whichever binds first; one
// thread per row leaves most of a 132-SM GPU idle on a 4096-row Linear), at
// least 4 columns a lane; then smaller CUDA blocks while there are fewer
// blocks than multiprocessors.
BlockLaunch choose_block_launch(const BlockProblem& problem, const GpuLimits& gpu);

// "128 threads, 8 lanes a row (16 rows a block), 256 blocks" for logs and benchmarks.
std::string describe(const BlockProblem& problem, const BlockLaunch& launch);

// Checks the problem (pointers, sizes, n <= kGptqPbMaxBlocksize) and launches
// on `stream` (a cudaStream_t) in the shape chosen for the current GPU, or in
// `launch`; every launch is checked. Device pointers.
void gptq_pb_block(const BlockProblem& problem, void* stream);
void gptq_pb_block(const BlockProblem& problem, const BlockLaunch& launch, void* stream);
// The shape gptq_pb_block(problem, stream) launches on the current GPU.
BlockLaunch gptq_pb_block_launch(const BlockProblem& problem);

// The same launch run on the host, thread by thread between the kernel's
// barriers: phase 1 for each thread into a local array standing in for
// shared memory, then each column step for each thread. Host pointers. For
// tests and debugging: single-threaded.
void gptq_pb_block_emulated(const BlockProblem& problem, const BlockLaunch& launch);

// The argument checks both share.
void check_block_problem(const BlockProblem& problem);
void check_block_launch(const BlockLaunch& launch);

}  // namespace pbllm::kernels
