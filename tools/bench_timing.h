// The timing rule of the benchmark binaries (pbllm-bench, pbllm_bench_gptq).
#pragma once

#include <algorithm>
#include <chrono>

namespace pbllm::tools {

// Best wall time of `repeat` runs of `work` after one warm-up run. `work`
// must finish its work before returning (read a result back from a GPU).
template <typename Work>
double best_seconds(int repeat, Work&& work) {
  double best = 1e30;
  for (int run = 0; run <= repeat; ++run) {
    const auto start = std::chrono::steady_clock::now();
    work();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (run > 0) best = std::min(best, seconds);
  }
  return best;
}

}  // namespace pbllm::tools
