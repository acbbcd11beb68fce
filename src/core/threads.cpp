#include "pbllm/core/threads.h"

#include <ATen/Parallel.h>

#include <thread>

namespace pbllm {

int set_compute_threads(int threads) {
  const int count = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(count);
  return count;
}

}  // namespace pbllm
