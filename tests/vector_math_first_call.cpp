// The first parallel call of LibTorch's MKL vector math, in a fresh process
// whose thread pool is running: the rotary table of a 128-token window (cos
// and sin of 4096 angles, two chunks of 2048, one per thread), computed
// twice; prints how many values the first call got otherwise, exits 1 if any.
//   pbllm_vector_math_first_call initialised|raw
// `initialised` sets the threads as the tools do (set_compute_threads);
// `raw` only at::set_num_threads, to show what that guards against (here:
// 2048 values differ, one thread's chunk, in about 1 process of 7).
#include <ATen/Parallel.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/ne.h>
#include <ATen/ops/outer.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/randn.h>

#include <cstdio>
#include <cstring>

#include "pbllm/core/threads.h"

int main(int argc, char** argv) {
  if (argc != 2 || (std::strcmp(argv[1], "initialised") != 0 && std::strcmp(argv[1], "raw") != 0)) {
    std::fprintf(stderr, "usage: %s initialised|raw\n", argv[0]);
    return 2;
  }
  if (std::strcmp(argv[1], "initialised") == 0)
    pbllm::set_compute_threads(2);
  else
    at::set_num_threads(2);
  const at::Tensor m = at::randn({512, 512});
  // The thread pool running, as a tool's start-up GEMM leaves it (without it no race was seen).
  (void)at::mm(m, m);
  const at::Tensor exponents = at::arange(0, 32, 2, at::kLong).to(at::kFloat).div(32);
  const at::Tensor inv_freq = at::pow(10000.0, exponents).reciprocal();
  const at::Tensor angles = at::outer(at::arange(0, 128, at::kLong).to(at::kFloat), inv_freq);
  const at::Tensor both = at::cat({angles, angles}, -1);
  const at::Tensor first_cos = both.cos(), first_sin = both.sin();
  const int64_t differing = at::ne(first_cos, both.cos()).sum().item<int64_t>() +
                            at::ne(first_sin, both.sin()).sum().item<int64_t>();
  std::printf("%lld\n", static_cast<long long>(differing));
  return differing == 0 ? 0 : 1;
}
