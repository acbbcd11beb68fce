#include "pbllm/core/threads.h"

#include <ATen/Parallel.h>
#include <ATen/ops/acos.h>
#include <ATen/ops/asin.h>
#include <ATen/ops/atan.h>
#include <ATen/ops/cos.h>
#include <ATen/ops/erf.h>
#include <ATen/ops/erfc.h>
#include <ATen/ops/erfinv.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/full.h>
#include <ATen/ops/log.h>
#include <ATen/ops/log10.h>
#include <ATen/ops/log2.h>
#include <ATen/ops/sin.h>
#include <ATen/ops/sqrt.h>
#include <ATen/ops/tan.h>
#include <ATen/ops/tanh.h>
#include <ATen/ops/trunc.h>

#include <thread>

#include "pbllm/core/check.h"

namespace pbllm {

void initialise_vector_math() {
  // LibTorch hands float and double cos, sin, exp, ... to MKL's vector math
  // (VML) in chunks of 2048 values, one per thread. The first call of each
  // MKL function made from two threads at once can run the worker's chunk
  // on another code path (measured here: the rotary cos/sin of positions
  // 64..127 of a 128-token window differed by ~1e-5 in about 1 process of 7, so a
  // resumed pbllm-quantize, whose first forward is not the uninterrupted
  // run's, gave other bits). One serial call of each, before any parallel
  // one, settles it: 16 values are one chunk.
  for (const auto dtype : {at::kFloat, at::kDouble}) {
    const at::Tensor half = at::full({16}, 0.5, at::TensorOptions().dtype(dtype));
    for (auto* op : {&at::acos, &at::asin, &at::atan, &at::cos, &at::erf, &at::erfc, &at::erfinv, &at::exp,
                     &at::log, &at::log10, &at::log2, &at::sin, &at::sqrt, &at::tan, &at::tanh, &at::trunc})
      (void)(*op)(half);
  }
}

int set_compute_threads(int threads) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // Past a few times the cores, threads only add contention (and OpenMP's
  // per-thread stacks: thousands of them ended in a segfault).
  PBLLM_CHECK(threads <= 4 * cores, "--threads ", threads, " is more than 4x the ", cores,
              " cores of this machine (at most ", 4 * cores, ")");
  const int count = threads > 0 ? threads : cores;
  at::set_num_threads(count);
  initialise_vector_math();
  return count;
}

}  // namespace pbllm
