#include "pbllm/quant/quantizers.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/amax.h>
#include <ATen/ops/amin.h>
#include <ATen/ops/maximum.h>
#include <ATen/ops/minimum.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/round.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include "pbllm/core/check.h"

namespace pbllm::quant {
namespace {

// Per-row [min(row, 0), max(row, 0)], both 0 widened to [-1, 1] (the reference's HighQuantizer).
std::pair<at::Tensor, at::Tensor> row_range(const at::Tensor& W) {
  at::Tensor low = at::minimum(W.amin(1), at::zeros_like(W.select(1, 0)));
  at::Tensor high = at::maximum(W.amax(1), at::zeros_like(W.select(1, 0)));
  const at::Tensor empty = (low == 0) & (high == 0);
  low = at::where(empty, -1.0, low);
  high = at::where(empty, 1.0, high);
  return {low, high};
}

}  // namespace

void HighBitQuantizer::calibrate(const at::Tensor& W, int bits, const at::Tensor& salient) {
  PBLLM_CHECK(bits >= 1 && bits <= 16, "--high_bit ", bits, " is outside 1..16");
  maxq_ = static_cast<float>((1 << bits) - 1);
  // The range always includes 0, so zeroing the other entries leaves the
  // salient entries' range (a row without any never uses this quantizer).
  const auto [low, high] = row_range(salient.defined() ? at::where(salient, W, 0.0) : W);
  scale_ = ((high - low) / maxq_).contiguous();
  zero_ = at::round(-low / scale_).contiguous();
}

kernels::HighBitParams HighBitQuantizer::params() const {
  return {scale_.data_ptr<float>(), zero_.data_ptr<float>(), maxq_};
}

LowBitQuantizer::LowBitQuantizer(Options options, int64_t rows, int64_t groups,
                                 const at::TensorOptions& tensor_options)
    : options_(options),
      rows_(rows),
      mean_(at::zeros({groups, rows}, tensor_options.dtype(at::kFloat))),
      scale_(at::zeros({groups, rows}, tensor_options.dtype(at::kFloat))),
      zero_(at::zeros({groups, rows}, tensor_options.dtype(at::kFloat))) {
  // The grid's top code (the reference's "4bit" has codes 0..7, "2bit" 0..3); unused by the other methods.
  maxq_ = static_cast<float>(std::max(low_bit_method_traits(options_.method).levels - 1, 1));
}

kernels::LowBitParams LowBitQuantizer::params(int64_t group) const {
  return {options_.method, mean_[group].data_ptr<float>(),
          scale_[group].data_ptr<float>(), zero_[group].data_ptr<float>(), maxq_};
}

void LowBitQuantizer::calibrate(const at::Tensor& W_group, const at::Tensor& binarized, int64_t group) {
  auto store = [&](at::Tensor& target, const at::Tensor& values) { target[group].copy_(values.reshape({-1})); };
  // The reference calibrates on W * binarized: salient entries count as zeros.
  const at::Tensor masked = W_group * binarized;
  switch (options_.method) {
    case LowBitMethod::xnor: {
      if (options_.statistics_over_binarized_only) {
        const at::Tensor count = binarized.sum(1, true).clamp_min(1).to(at::kFloat);
        const at::Tensor mean = masked.sum(1, true) / count;
        store(mean_, mean);
        store(scale_, ((W_group - mean).abs() * binarized).sum(1, true) / count);
      } else {
        const at::Tensor mean = masked.mean(-1).view({-1, 1});
        store(mean_, mean);
        store(scale_, (masked - mean).abs().mean(-1, true));
      }
      return;
    }
    case LowBitMethod::sign: {
      if (options_.statistics_over_binarized_only) {
        const at::Tensor count = binarized.sum(1, true).clamp_min(1).to(at::kFloat);
        store(scale_, at::relu(masked).sum(1, true) / count);
      } else {
        store(scale_, at::relu(masked).mean(-1, true));
      }
      return;
    }
    case LowBitMethod::two_bit:
    case LowBitMethod::four_bit: {
      const auto [low, high] = row_range(masked);
      const at::Tensor scale = ((high - low) / maxq_).reshape({-1, 1});
      store(scale_, scale);
      // The reference's quirk: every row's zero point divides by row `group`'s
      // scale (scale[groupi] indexes rows, not groups); the correction uses
      // each row's own scale.
      PBLLM_CHECK(options_.zero_point_per_row || group < rows_, "the reference's 2bit/4bit zero point reads row ",
                  group, " of a ", rows_, "-row weight (it would crash); use the per-row zero point correction");
      const at::Tensor divisor = options_.zero_point_per_row ? scale : scale[group];
      const at::Tensor zero = at::round(-low.reshape({-1, 1}) / divisor).reshape({-1, 1});
      store(zero_, zero);
      return;
    }
    case LowBitMethod::no:
    case LowBitMethod::prune:
      return;
  }
}

}  // namespace pbllm::quant
