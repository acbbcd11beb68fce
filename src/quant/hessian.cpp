#include "pbllm/quant/hessian.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/zeros.h>

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

}  // namespace

HessianAccumulator::HessianAccumulator(int64_t columns, const at::Device& device)
    : hessian_(at::zeros({columns, columns}, at::TensorOptions().dtype(at::kFloat).device(device))) {}

double hessian_update_flops(double rows, int64_t columns) {
  return 2 * rows * static_cast<double>(columns) * static_cast<double>(columns);
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
      report::timed(report::Phase::hessian, hessian_update_flops(static_cast<double>(rows.size(0)), rows.size(1)));
#ifdef PBLLM_WITH_CUDA
  if (hessian_.is_cuda()) {
    // The GPU rounds (2/n) X^T X once instead of scaling X first: within float rounding of the reference.
    update_on_gpu(hessian_, rows, keep, 2.0 / static_cast<double>(sequences_));
    return;
  }
#endif
  // On the CPU, the reference's exact sequence of float32 roundings.
  hessian_.mul_(keep);
  const at::Tensor scaled = rows.to(hessian_.device(), at::kFloat) * std::sqrt(2.0 / sequences_);
  hessian_ += at::matmul(scaled.t(), scaled);  // not addmm_: the reference adds the finished product
}

}  // namespace pbllm::quant
