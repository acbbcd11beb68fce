// A random Linear for the quantizer's tests: W [rows, columns] and its
// Hessian H = 2/n X^T X from correlated inputs, with one dead (never active) column.
#pragma once

#include <ATen/ATen.h>

#include <utility>

#include "pbllm/pack/packed_linear.h"
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

// A random partially binarized Linear as GPTQ-PB would leave it, without the
// GPTQ work (for the packed GEMV's tests and benchmark at 7B shapes): the
// largest |w| salient (a fraction 1 - low_frac), on each row's 8-bit grid; the
// rest xnor-binarized around the row's mean.
inline pack::QuantizedLinear random_quantized_linear(int64_t rows, int64_t columns, double low_frac, uint64_t seed,
                                                     at::ScalarType dtype = at::kFloat) {
  at::manual_seed(seed);
  const at::Tensor W = at::randn({rows, columns}).to(dtype).to(at::kFloat);  // as a checkpoint in `dtype` holds it
  const at::Tensor threshold = std::get<0>(W.abs().reshape({-1}).kthvalue(
      std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(W.numel()) * low_frac))));
  pack::QuantizedLinear q;
  q.salient = W.abs() > threshold;
  const at::Tensor low = at::minimum(W.amin(1), at::zeros({rows})), high = at::maximum(W.amax(1), at::zeros({rows}));
  q.high_scale = (high - low) / 255.0f;
  q.high_zero = at::round(-low / q.high_scale);
  const at::Tensor mean = (W * ~q.salient).mean(1, true), alpha = ((W * ~q.salient) - mean).abs().mean(1, true);
  const at::Tensor codes = at::clamp(at::round(W / q.high_scale.unsqueeze(1)) + q.high_zero.unsqueeze(1), 0, 255);
  const at::Tensor high_values = q.high_scale.unsqueeze(1) * (codes - q.high_zero.unsqueeze(1));
  q.weight = at::where(q.salient, high_values, at::sign(W - mean) * alpha + mean);
  q.low_mean = mean.view({1, rows});
  q.low_scale = alpha.view({1, rows});
  q.low_zero = at::zeros({1, rows});
  q.dtype = dtype;
  return q;
}

}  // namespace pbllm::testing
