#include "pbllm/quant/hessian.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/zeros.h>

#include <cmath>

#include "pbllm/core/check.h"

namespace pbllm::quant {

HessianAccumulator::HessianAccumulator(int64_t columns, const at::Device& device)
    : hessian_(at::zeros({columns, columns}, at::TensorOptions().dtype(at::kFloat).device(device))) {}

void HessianAccumulator::add(const at::Tensor& input) {
  const at::Tensor batch = input.dim() == 2 ? input.unsqueeze(0) : input;
  PBLLM_CHECK(batch.dim() == 3 && batch.size(2) == hessian_.size(0), "Hessian input of shape ", input.sizes(),
              " does not have ", hessian_.size(0), " columns");
  const int64_t added = batch.size(0);
  hessian_.mul_(static_cast<double>(sequences_) / static_cast<double>(sequences_ + added));
  sequences_ += added;
  const at::Tensor scaled =
      batch.reshape({-1, batch.size(2)}).to(hessian_.device(), at::kFloat) * std::sqrt(2.0 / sequences_);
  hessian_ += at::matmul(scaled.t(), scaled);  // not addmm_: the reference adds the finished product
}

}  // namespace pbllm::quant
