#include "pbllm/qat/binarized_linear.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/kthvalue.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/round.h>
#include <ATen/ops/where.h>
#include <torch/csrc/autograd/custom_function.h>

#include "pbllm/core/check.h"

namespace pbllm::qat {

namespace {

// The reference's STEBinary: forward sign, backward the identity.
struct SignStraightThrough : public torch::autograd::Function<SignStraightThrough> {
  static at::Tensor forward(torch::autograd::AutogradContext*, const at::Tensor& w) { return w.sign(); }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list grad) {
    return {grad[0]};
  }
};

}  // namespace

namespace {

// Per row [rows, 1]: the min, the range's divisor (1 where the range is 0),
// whether it is 0, and the zero point, as the reference computes them.
struct EightBitRows {
  at::Tensor low, divisor, flat, zero_point;
};

EightBitRows eight_bit_rows(const at::Tensor& w, bool unrounded_zero_point) {
  const at::Tensor low = std::get<0>(w.min(-1, true));
  const at::Tensor range = (std::get<0>(w.max(-1, true)) - low).to(at::kFloat);
  const at::Tensor flat = range == 0;
  const at::Tensor divisor = at::where(flat, at::ones_like(range), range);  // no 0 / 0 in rows kept as they are
  return {low, divisor, flat, unrounded_zero_point ? low : at::round(low)};
}

}  // namespace

at::Tensor weight_quant_8bit(const at::Tensor& w, bool unrounded_zero_point) {
  const at::NoGradGuard no_grad;
  const EightBitRows rows = eight_bit_rows(w, unrounded_zero_point);
  // As torch: a float -> uint8 cast goes through int64 and keeps the low 8
  // bits, which is the reference's wrap of negative codes (its clamp after the
  // cast does nothing).
  const at::Tensor codes = at::round((w - rows.zero_point) / rows.divisor * 255).to(at::kByte);
  const at::Tensor values = (codes * (rows.divisor / 255) + rows.zero_point).to(w.scalar_type());
  return at::where(rows.flat, w + 0, values);  // + 0: a -0.0 as the grid gives it (0 * step + offset)
}

EightBitGrid eight_bit_grid(const at::Tensor& w, bool unrounded_zero_point) {
  const at::NoGradGuard no_grad;
  const EightBitRows rows = eight_bit_rows(w, unrounded_zero_point);
  return {(rows.divisor / 255).reshape({-1}).to(at::kFloat),
          at::where(rows.flat, rows.low, rows.zero_point).reshape({-1}).to(at::kFloat)};
}

at::Tensor magnitude_outliers(const at::Tensor& w, double fraction, const std::string& name) {
  const at::NoGradGuard no_grad;
  const at::Tensor flat = w.reshape({-1});
  const int64_t n = flat.numel();
  // Python's int() of the reference's float expressions, evaluated in its order.
  const auto lower_k = static_cast<int64_t>(static_cast<double>(n) * fraction / 2);
  const auto upper_k = static_cast<int64_t>(static_cast<double>(n) * (1 - fraction / 2));
  PBLLM_CHECK(lower_k >= 1 && upper_k <= n, name, ": an outlier fraction of ", fraction, " selects no outlier among its ",
              n, " weights (it needs at least ", 2.0 / n, ")");
  const at::Tensor lower = std::get<0>(at::kthvalue(flat, lower_k));
  const at::Tensor upper = std::get<0>(at::kthvalue(flat, upper_k));
  return (w < lower) | (w > upper);
}

at::Tensor binary_scale(const at::Tensor& w, const at::Tensor& outliers, bool per_row) {
  const at::NoGradGuard no_grad;
  const at::Tensor kept = ~outliers;
  if (per_row) {
    const at::Tensor counts = kept.sum(1, true).clamp_min(1).to(w.scalar_type());
    return (w.abs() * kept).sum(1, true) / counts;
  }
  const at::Tensor binarized = w.masked_select(kept);
  if (binarized.numel() == 0) return at::zeros({1, 1}, w.options());
  return binarized.abs().mean(-1).view({1, 1});
}

at::Tensor sign_ste(const at::Tensor& w) { return SignStraightThrough::apply(w); }

at::Tensor partially_binarized(const at::Tensor& w, const at::Tensor& outliers, const at::Tensor& scale,
                               bool train_outliers) {
  // + 0: sign 0 times a scale of 0 is -0.0 where the latent is negative; the
  // packed format's xnor value (code * scale + mean 0) is +0.0.
  return at::where(outliers, train_outliers ? w : w.detach(), sign_ste(w) * scale + 0);
}

}  // namespace pbllm::qat
