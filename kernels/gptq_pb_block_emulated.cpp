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

void gptq_pb_block_emulated(const BlockProblem& p) {
  check_block_problem(p);
  const int threads = kGptqPbThreadsPerBlock;
  const int64_t blocks = (p.rows + threads - 1) / threads;
  std::vector<float> shared(static_cast<size_t>(p.n * p.n));
  float buffer[kGptqPbMaxBlocksize];
  for (int64_t block = 0; block < blocks; ++block) {
    for (int thread = 0; thread < threads; ++thread) load_u_block(p, shared.data(), thread, threads);
    // __syncthreads()
    for (int thread = 0; thread < threads; ++thread) {
      const int64_t row = block * threads + thread;
      if (row < p.rows) walk_row(p, shared.data(), row, buffer);
    }
  }
}

}  // namespace pbllm::kernels
