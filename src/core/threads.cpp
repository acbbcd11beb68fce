#include "pbllm/core/threads.h"

#include <ATen/Parallel.h>

#include <thread>

#include "pbllm/core/check.h"

namespace pbllm {

int set_compute_threads(int threads) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // Past a few times the cores, threads only add contention (and OpenMP's
  // per-thread stacks: thousands of them ended in a segfault).
  PBLLM_CHECK(threads <= 4 * cores, "--threads ", threads, " is more than 4x the ", cores,
              " cores of this machine (at most ", 4 * cores, ")");
  const int count = threads > 0 ? threads : cores;
  at::set_num_threads(count);
  return count;
}

}  // namespace pbllm
