#include "pbllm/quant/hessian.h"

#include <ATen/TensorOperators.h>
#include <ATen/Parallel.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/tril.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>

#include "pbllm/core/check.h"
#include "pbllm/report/profile.h"

#ifdef PBLLM_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "hessian_update.h"
#endif

namespace pbllm::quant {
namespace {

#ifdef PBLLM_WITH_CUDA
kernels::GemmInput gemm_input(at::ScalarType type) {
  if (type == at::kHalf) return kernels::GemmInput::f16;
  if (type == at::kBFloat16) return kernels::GemmInput::bf16;
  return kernels::GemmInput::f32;
}

// H <- keep H + scale X^T X in one cuBLAS GEMM reading X in its own dtype.
void update_on_gpu(at::Tensor& hessian, const at::Tensor& rows, double keep, double scale) {
  const c10::cuda::CUDAGuard on_device(hessian.device());  // the cuBLAS handle of the Hessian's GPU
  const bool sixteen_bit = rows.scalar_type() == at::kHalf || rows.scalar_type() == at::kBFloat16;
  const at::Tensor x = rows.to(hessian.device(), sixteen_bit ? rows.scalar_type() : at::kFloat).contiguous();
  const kernels::HessianUpdate update{x.data_ptr(), gemm_input(x.scalar_type()), x.size(0), x.size(1),
                                      static_cast<float>(scale), static_cast<float>(keep), hessian.data_ptr<float>()};
  kernels::hessian_update(update, at::cuda::getCurrentCUDABlasHandle(),
                          at::cuda::getCurrentCUDAStream(hessian.device().index()).stream());
}
#endif

// The row blocks of the lower triangle: [first, first + size) each.
template <typename Block>
void for_each_gram_block(int64_t columns, Block&& block) {
  for (int64_t first = 0; first < columns; first += kGramBlock) block(first, std::min(kGramBlock, columns - first));
}

// H <- keep H + X^T X for X [k, n] over H's lower triangle, with the
// reference's float32 roundings (H * keep, then + the product): a symmetric
// rank-k update, which LibTorch does not offer (the wheel's MKL exports no
// ssyrk). Each row panel of the lower triangle is one GEMM, X[:, panel]^T
// X[:, :panel end], about half the full product's FLOPs in all, added into H
// as it is made: no n x n temporary. Each entry is the full product's dot
// product; on this machine's MKL the results are the full GEMM's bits on one
// and two threads (SmolLM2-135M's quantized weights compared), but a BLAS may
// split a panel's sum differently than the full product's, as it does for the
// full product at another thread count.
void update_lower_triangle(at::Tensor& hessian, const at::Tensor& x, float keep) {
  const int64_t n = x.size(1);
  float* h = hessian.data_ptr<float>();
  for_each_gram_block(n, [&](int64_t first, int64_t size) {
    const int64_t width = first + size;
    const at::Tensor panel = at::mm(x.narrow(1, first, size).t(), x.narrow(1, 0, width)).contiguous();
    const float* p = panel.data_ptr<float>();
    at::parallel_for(0, size, 16, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        float* h_row = h + (first + r) * n;
        const float* p_row = p + r * width;
        for (int64_t c = 0; c <= first + r; ++c) h_row[c] = h_row[c] * keep + p_row[c];
      }
    });
  });
}

// The upper triangle from the lower, by blocks (a pair of them fits in L2).
void mirror_lower_triangle(at::Tensor& hessian) {
  const int64_t n = hessian.size(0);
  for_each_gram_block(n, [&](int64_t first, int64_t size) {
    at::Tensor diagonal = hessian.narrow(0, first, size).narrow(1, first, size);
    diagonal.copy_(at::tril(diagonal) + at::tril(diagonal, -1).t());
    for_each_gram_block(first, [&](int64_t left, int64_t width) {
      hessian.narrow(0, left, width).narrow(1, first, size).copy_(hessian.narrow(0, first, size).narrow(1, left, width).t());
    });
  });
}

}  // namespace

HessianAccumulator::HessianAccumulator(int64_t columns, const at::Device& device)
    : hessian_(at::zeros({columns, columns}, at::TensorOptions().dtype(at::kFloat).device(device))) {}

double hessian_update_flops(double rows, int64_t columns, const at::Device& device) {
  if (device.is_cuda() || columns <= kGramBlock) return 2 * rows * static_cast<double>(columns) * static_cast<double>(columns);
  double flops = 0;
  for_each_gram_block(columns, [&](int64_t first, int64_t size) {
    flops += 2 * rows * static_cast<double>(size) * static_cast<double>(first + size);
  });
  return flops;
}

void HessianAccumulator::add(const at::Tensor& input) {
  const at::Tensor batch = input.dim() == 2 ? input.unsqueeze(0) : input;
  PBLLM_CHECK(batch.dim() == 3 && batch.size(2) == hessian_.size(0), "Hessian input of shape ", input.sizes(),
              " does not have ", hessian_.size(0), " columns");
  const int64_t added = batch.size(0);
  const double keep = static_cast<double>(sequences_) / static_cast<double>(sequences_ + added);
  sequences_ += added;
  const at::Tensor rows = batch.reshape({-1, batch.size(2)});
  const auto timed =
      report::timed(report::Phase::hessian,
                    hessian_update_flops(static_cast<double>(rows.size(0)), rows.size(1), hessian_.device()));
#ifdef PBLLM_WITH_CUDA
  if (hessian_.is_cuda()) {
    // The GPU rounds (2/n) X^T X once instead of scaling X first: within float rounding of the reference.
    update_on_gpu(hessian_, rows, keep, 2.0 / static_cast<double>(sequences_));
    return;
  }
#endif
  // On the CPU, the reference's exact sequence of float32 roundings.
  const at::Tensor scaled = rows.to(hessian_.device(), at::kFloat) * std::sqrt(2.0 / sequences_);
  if (hessian_.is_cpu() && hessian_.size(0) > kGramBlock) {
    update_lower_triangle(hessian_, scaled, static_cast<float>(keep));  // torch's mul_ rounds keep to float too
    upper_stale_ = true;
    return;
  }
  hessian_.mul_(keep);
  hessian_ += at::matmul(scaled.t(), scaled);  // not addmm_: the reference adds the finished product
}

const at::Tensor& HessianAccumulator::hessian() const {
  if (upper_stale_) {
    const auto timed = report::timed(report::Phase::hessian);
    mirror_lower_triangle(hessian_);
    upper_stale_ = false;
  }
  return hessian_;
}

}  // namespace pbllm::quant
