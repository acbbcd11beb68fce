// The timing rule of the benchmark binaries (pbllm-bench, pbllm_bench_gptq).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

#include "pbllm/core/check.h"

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

// "ROWSxCOLUMNS" (a benchmark's --shapes entry) -> {rows, columns}; anything else is a one-line error.
inline std::pair<int64_t, int64_t> parse_shape(const std::string& shape) {
  const auto x = shape.find('x');
  const bool well_formed = x != std::string::npos && x > 0 && x + 1 < shape.size() && x < 19 &&
                           shape.size() - x < 20 && shape.find_first_not_of("0123456789x") == std::string::npos &&
                           shape.find('x', x + 1) == std::string::npos;
  PBLLM_CHECK(well_formed, "--shapes: '", shape, "' is not ROWSxCOLUMNS");
  const int64_t rows = std::stoll(shape.substr(0, x)), columns = std::stoll(shape.substr(x + 1));
  PBLLM_CHECK(rows > 0 && columns > 0, "--shapes: '", shape, "' has an empty side");
  return {rows, columns};
}

}  // namespace pbllm::tools
