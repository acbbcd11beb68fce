// Host-facing entry of the fused GPTQ-PB block kernel (kernels/gptq_pb_block.cu)
// and its host emulation (kernels/gptq_pb_block_emulated.cpp). Both run the
// phases of kernels/gptq_pb_phases.h: one thread per row, the U block in
// shared memory. The columns right of the block are updated by the caller
// with one GEMM (cuBLAS on the GPU).
#pragma once

#include "gptq_pb_phases.h"

namespace pbllm::kernels {

constexpr int kGptqPbThreadsPerBlock = 128;
// A row's private buffer (n floats) lives in registers / local memory and the
// U block (n x n floats, 64 KiB at 128) in shared memory.
constexpr int64_t kGptqPbMaxBlocksize = 128;

// Checks the problem (pointers, sizes, n <= kGptqPbMaxBlocksize) and launches
// on `stream` (a cudaStream_t); every launch is checked. Device pointers.
void gptq_pb_block(const BlockProblem& problem, void* stream);

// The same launch run on the host: for each CUDA block, phase 1 for each of
// its threads into a local array standing in for shared memory, then phase 2
// for each thread. Host pointers. For tests and debugging: single-threaded.
void gptq_pb_block_emulated(const BlockProblem& problem);

// The argument checks both share.
void check_block_problem(const BlockProblem& problem);

}  // namespace pbllm::kernels
