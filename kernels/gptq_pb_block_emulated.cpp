// The host side both the kernel and its emulation share (checks, the launch
// shape), and the emulation itself.
#include <algorithm>
#include <vector>

#include "gptq_pb_block.h"
#include "pbllm/core/check.h"

namespace pbllm::kernels {
void check_block_problem(const BlockProblem& p) {
  PBLLM_CHECK(p.weights && p.binarized && p.U && p.row_loss && (p.errors || !p.compensate),
              "gptq_pb_block: null pointer");
  PBLLM_CHECK(p.rows > 0 && p.columns > 0 && p.first >= 0 && p.n > 0 && p.first + p.n <= p.columns,
              "gptq_pb_block: block [", p.first, ", ", p.first + p.n, ") outside ", p.columns, " columns");
  PBLLM_CHECK(p.n <= kGptqPbMaxBlocksize, "gptq_pb_block: --blocksize ", p.n, " exceeds the kernel's ",
              kGptqPbMaxBlocksize);
  PBLLM_CHECK(p.high.scale && p.high.zero && p.low.mean && p.low.scale && p.low.zero,
              "gptq_pb_block: null quantizer parameters");
}

void check_block_launch(const BlockLaunch& launch) {
  const int lanes = launch.lanes_per_row, threads = launch.threads_per_block;
  PBLLM_CHECK(lanes >= 1 && lanes <= kGptqPbMaxLanes && (lanes & (lanes - 1)) == 0,
              "gptq_pb_block: ", lanes, " lanes a row: a power of two up to ", kGptqPbMaxLanes);
  PBLLM_CHECK(threads >= 32 && threads <= 256 && threads % 32 == 0,
              "gptq_pb_block: ", threads, " threads a block: a multiple of 32 up to 256");
}

int64_t block_shared_bytes(const BlockProblem& p, const BlockLaunch& launch) {
  return block_shared_floats(launch.rows_per_block(), p.n) * static_cast<int64_t>(sizeof(float));
}

BlockLaunch choose_block_launch(const BlockProblem& p, const GpuLimits& gpu) {
  BlockLaunch launch;  // 128 threads a block
  const int64_t blocks_per_multiprocessor = std::max<int64_t>(
      1, std::min<int64_t>({gpu.shared_bytes_per_multiprocessor / block_shared_bytes(p, launch),
                            gpu.threads_per_multiprocessor / launch.threads_per_block, gpu.blocks_per_multiprocessor}));
  const int64_t threads_wanted = gpu.multiprocessors * blocks_per_multiprocessor * launch.threads_per_block;
  const int64_t most_lanes = std::clamp<int64_t>(p.n / 4, 1, kGptqPbMaxLanes);
  while (launch.lanes_per_row < most_lanes && p.rows * launch.lanes_per_row < threads_wanted)
    launch.lanes_per_row *= 2;
  while (launch.threads_per_block > 32 && launch.blocks(p.rows) < gpu.multiprocessors &&
         launch.threads_per_block / 2 >= launch.lanes_per_row)
    launch.threads_per_block /= 2;
  return launch;
}

std::string describe(const BlockProblem& p, const BlockLaunch& launch) {
  return std::to_string(launch.threads_per_block) + " threads, " + std::to_string(launch.lanes_per_row) +
         " lanes a row (" + std::to_string(launch.rows_per_block()) + " rows a block), " +
         std::to_string(launch.blocks(p.rows)) + " blocks";
}

void gptq_pb_block_emulated(const BlockProblem& p, const BlockLaunch& launch) {
  check_block_problem(p);
  check_block_launch(launch);
  const int threads = launch.threads_per_block, shift = launch.lane_shift();
  const int64_t lane_columns = (p.n + launch.lanes_per_row - 1) / launch.lanes_per_row;
  std::vector<double> shared_memory((block_shared_floats(launch.rows_per_block(), p.n) + 1) / 2);
  const BlockShared shared = carve_block_shared(shared_memory.data(), launch.rows_per_block());
  std::vector<float> buffers(static_cast<size_t>(threads * lane_columns));  // each thread's local array
  std::vector<BlockThread> block(threads);
  for (int64_t b = 0; b < launch.blocks(p.rows); ++b) {
    for (int thread = 0; thread < threads; ++thread) load_u_block(p, shared.u_block, thread, threads);
    // __syncthreads()
    for (int thread = 0; thread < threads; ++thread) {
      block[thread] = block_thread(p, b, thread, threads, shift);
      start_walk(p, block[thread], shared, &buffers[thread * lane_columns]);
    }
    for (int64_t i = 0; i < p.n; ++i) {
      for (int thread = 0; thread < threads; ++thread)
        quantize_step(p, block[thread], shared, i, &buffers[thread * lane_columns]);
      // __syncwarp()
      for (int thread = 0; thread < threads; ++thread)
        apply_step(p, block[thread], shared, i, &buffers[thread * lane_columns]);
    }
    for (int thread = 0; thread < threads; ++thread) finish_walk(p, block[thread], shared);
  }
}

}  // namespace pbllm::kernels
