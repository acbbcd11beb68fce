// GPTQ-PB restated with plain LibTorch ops, column by column, as docs/DESIGN.md
// and the reference's gptq.py / high_quant.py / low_quant.py write it: the
// yardstick for the fused CPU loop and the CUDA kernel, and the baseline of
// scripts/bench_gptq.sh. Runs on the device of its inputs.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace pbllm::testing {

struct ReferenceOptions {
  std::string method = "xnor";    // xnor, sign, no, 2bit, 4bit, prune
  std::string metric = "hessian";  // magnitude, hessian
  double low_frac = 0.9;
  int high_bit = 8;
  int64_t blocksize = 128;
  int64_t groupsize = -1;
  double percdamp = 0.01;
  bool disable_gptq = false;
};

struct ReferenceResult {
  at::Tensor weight;
  at::Tensor binarized;
  double loss = 0;
};

inline ReferenceResult reference_gptq_pb(at::Tensor W, at::Tensor H, const ReferenceOptions& o) {
  W = W.to(at::kFloat).clone();
  H = H.to(at::kFloat).clone();
  const int64_t rows = W.size(0), columns = W.size(1);
  // High-bit quantizer on the original W: per row, asymmetric, range including 0.
  const double maxq = std::pow(2.0, o.high_bit) - 1;
  auto range = [](const at::Tensor& x) {
    at::Tensor low = at::minimum(std::get<0>(x.min(1)), at::zeros({x.size(0)}, x.options()));
    at::Tensor high = at::maximum(std::get<0>(x.max(1)), at::zeros({x.size(0)}, x.options()));
    const at::Tensor both_zero = (low == 0) & (high == 0);
    low.masked_fill_(both_zero, -1);
    high.masked_fill_(both_zero, 1);
    return std::make_pair(low, high);
  };
  auto [low, high] = range(W);
  const at::Tensor high_scale = ((high - low) / maxq).reshape({-1, 1});
  const at::Tensor high_zero = at::round(-low.reshape({-1, 1}) / high_scale);
  auto quantize_high = [&](const at::Tensor& w) {
    return high_scale * (at::clamp(at::round(w / high_scale) + high_zero, 0, maxq) - high_zero);
  };
  // Dead columns, damping, U.
  const at::Tensor dead = H.diagonal() == 0;
  const at::Tensor dead_index = dead.nonzero().flatten();
  H.index_put_({dead_index, dead_index}, 1.0);
  W.index_put_({at::indexing::Slice(), dead_index}, 0.0);
  const at::Tensor damp = o.percdamp * H.diagonal().mean();
  const at::Tensor diagonal_index = at::arange(columns, W.options().dtype(at::kLong));
  H.index_put_({diagonal_index, diagonal_index}, H.diagonal() + damp);
  at::Tensor U = at::linalg_cholesky(at::cholesky_inverse(at::linalg_cholesky(H)), /*upper=*/true);
  // Salient mask and low-bit calibration per group.
  const int64_t groupsize = o.groupsize > 0 ? o.groupsize : columns;
  const int64_t groups = (columns + groupsize - 1) / groupsize;
  at::Tensor mask = at::zeros({rows, columns}, W.options().dtype(at::kBool));
  at::Tensor mean = at::zeros({groups, rows, 1}, W.options()), scale = at::zeros_like(mean), zero = at::zeros_like(mean);
  const double low_maxq = o.method == "4bit" ? 7 : 3;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t st = g * groupsize, ed = std::min(st + groupsize, columns);
    const at::Tensor w = W.slice(1, st, ed);
    const at::Tensor score = o.metric == "magnitude" ? w.abs() : w.pow(2) / U.diagonal().slice(0, st, ed).reshape({1, -1}).pow(2);
    const at::Tensor sorted = std::get<0>(score.flatten().sort());
    const auto index = static_cast<int64_t>(score.numel() * o.low_frac);
    const at::Tensor m = index >= score.numel() ? at::ones_like(score, at::kBool) : score <= sorted[index];
    mask.slice(1, st, ed).copy_(m);
    const at::Tensor masked = w * m;
    if (o.method == "xnor") {
      const at::Tensor mu = masked.mean(-1).view({-1, 1});
      mean[g] = mu;
      scale[g] = (masked - mu).abs().mean(-1, true);
    } else if (o.method == "sign") {
      scale[g] = at::relu(masked).mean(-1, true);
    } else if (o.method == "2bit" || o.method == "4bit") {
      auto [lo, hi] = range(masked);
      const at::Tensor s = ((hi - lo) / low_maxq).reshape({-1, 1});
      zero[g] = at::round(-lo / s[g]).reshape({-1, 1});  // the reference's zero from row g's scale
      scale[g] = s;
    }
  }
  auto quantize_low = [&](const at::Tensor& w, int64_t g) {
    if (o.method == "xnor") return (w - mean[g]).sign() * scale[g] + mean[g];
    if (o.method == "sign") return (w > 0).to(at::kFloat) * scale[g];
    if (o.method == "2bit" || o.method == "4bit")
      return scale[g] * (at::clamp(at::round(w / scale[g]) + zero[g], 0, low_maxq) - zero[g]);
    if (o.method == "prune") return at::zeros_like(w);
    return w;
  };
  // The column loop; the loss is summed on the device (no sync per column).
  at::Tensor loss = at::zeros({}, W.options().dtype(at::kDouble));
  for (int64_t st = 0; st < columns; st += o.blocksize) {
    const int64_t ed = std::min(st + o.blocksize, columns), n = ed - st, g = st / groupsize;
    if (o.disable_gptq) {
      const at::Tensor w = W.slice(1, st, ed);
      const at::Tensor m = mask.slice(1, st, ed);
      const at::Tensor q = at::where(m, quantize_low(w, g), quantize_high(w));
      loss += ((w - q).pow(2) / U.diagonal().slice(0, st, ed).reshape({1, -1}).pow(2)).sum() / 2;
      W.slice(1, st, ed).copy_(q);
      continue;
    }
    at::Tensor W1 = W.slice(1, st, ed).clone(), Q1 = at::zeros_like(W1), Err1 = at::zeros_like(W1);
    const at::Tensor U1 = U.slice(0, st, ed).slice(1, st, ed);
    for (int64_t i = 0; i < n; ++i) {
      const at::Tensor w = W1.select(1, i).unsqueeze(1);
      const at::Tensor d = U1[i][i];
      const at::Tensor q = at::where(mask.slice(1, st, ed).select(1, i).unsqueeze(1), quantize_low(w, g), quantize_high(w));
      Q1.select(1, i).copy_(q.squeeze(1));
      loss += ((w - q).pow(2) / d.pow(2)).sum() / 2;
      const at::Tensor err = ((w - q) / d).squeeze(1);
      W1.slice(1, i, n).sub_(err.unsqueeze(1).matmul(U1[i].slice(0, i, n).unsqueeze(0)));
      Err1.select(1, i).copy_(err);
    }
    W.slice(1, st, ed).copy_(Q1);
    W.slice(1, ed, columns).sub_(Err1.matmul(U.slice(0, st, ed).slice(1, ed, columns)));
  }
  return {W, mask, loss.item<double>()};
}

}  // namespace pbllm::testing
