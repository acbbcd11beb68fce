// A random Linear for the quantizer's tests: W [rows, columns] and its
// Hessian H = 2/n X^T X from correlated inputs, with one dead (never active) column.
#pragma once

#include <ATen/ATen.h>

#include <utility>

#include "pbllm/quant/hessian.h"

namespace pbllm::testing {

inline std::pair<at::Tensor, at::Tensor> random_layer(int64_t rows, int64_t columns, uint64_t seed) {
  at::manual_seed(seed);
  const at::Tensor W = at::randn({rows, columns}) * 0.1;
  at::Tensor X = at::randn({4 * columns, columns}).matmul(at::randn({columns, columns}) * 0.3 + at::eye(columns));
  X.select(1, columns / 3).zero_();
  quant::HessianAccumulator accumulator(columns);
  accumulator.add(X.view({4, columns, columns}));
  return {W, accumulator.hessian()};
}

}  // namespace pbllm::testing
