#include "pbllm/quant/gptq_pb.h"

#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/bincount.h>
#include <ATen/ops/cholesky_inverse.h>
#include <ATen/ops/diag.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/eye.h>
#include <ATen/ops/flip.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/kthvalue.h>
#include <ATen/ops/where.h>
#include <ATen/ops/linalg_cholesky_ex.h>
#include <ATen/ops/linalg_solve_triangular.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "pbllm/core/check.h"
#include "gptq_pb_block.h"
#include "gptq_pb_rows_avx2.h"
#include "pbllm/report/logging.h"
#include "pbllm/report/profile.h"

#ifdef PBLLM_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace pbllm::quant {

InverseFactor inverse_factor_from_name(const std::string& name) {
  if (name == "reference") return InverseFactor::reference;
  PBLLM_CHECK(name == "one-cholesky", "--inverse-factor '", name, "' is not reference or one-cholesky");
  return InverseFactor::one_cholesky;
}

namespace {
// Below this, LAPACK's triangular solve inverts as fast as more levels of halving.
constexpr int64_t kDirectInverse = 512;
}  // namespace

double triangular_inverse_flops(int64_t n) {
  const double size = static_cast<double>(n);
  if (n <= kDirectInverse) return size * size * size;
  const int64_t h = n / 2;
  return triangular_inverse_flops(h) + triangular_inverse_flops(n - h) +
         2.0 * static_cast<double>(n - h) * static_cast<double>(h) * size;
}

double factorisation_flops(int64_t n, InverseFactor how) {
  const double cholesky = std::pow(static_cast<double>(n), 3) / 3;
  if (how == InverseFactor::one_cholesky) return cholesky + triangular_inverse_flops(n);
  return cholesky + 2 * cholesky + cholesky;
}

double column_loop_flops(int64_t rows, int64_t width) {
  return static_cast<double>(rows) * static_cast<double>(width) * static_cast<double>(width - 1);
}

double trailing_gemm_flops(int64_t rows, int64_t width, int64_t right) {
  return 2.0 * static_cast<double>(rows) * static_cast<double>(width) * static_cast<double>(right);
}

SalientMetric salient_metric_from_name(const std::string& name) {
  if (name == "magnitude") return SalientMetric::magnitude;
  if (name == "hessian") return SalientMetric::hessian;
  throw Error(str_cat("unknown --salient_metric '", name, "' (magnitude, hessian)"));
}

void GptqPbOptions::validate() const {
  PBLLM_CHECK(low_frac >= 0 && low_frac <= 1, "--low_frac ", low_frac, " is outside [0, 1]");
  PBLLM_CHECK(high_bit >= 1 && high_bit <= 16, "--high_bit ", high_bit, " is outside 1..16");
  PBLLM_CHECK(blocksize >= 1, "--blocksize ", blocksize, " must be positive");
  PBLLM_CHECK(groupsize == -1 || (groupsize > 0 && groupsize % blocksize == 0), "--groupsize ", groupsize,
              " must be -1 or a positive multiple of --blocksize ", blocksize);
  PBLLM_CHECK(percdamp >= 0, "--percdamp ", percdamp, " must be non-negative");
  PBLLM_CHECK(calibration_dtype == at::ScalarType::Undefined || calibration_dtype == at::kFloat ||
                  calibration_dtype == at::kHalf || calibration_dtype == at::kBFloat16,
              "calibration activations in ", at::toString(calibration_dtype), ": float32, float16 or bfloat16 only");
}

namespace {

constexpr int kMaxDampingRetries = 6;

bool all_finite(const at::Tensor& t) { return at::isfinite(t).all().item<bool>(); }

// U from the damped Hessian, or an undefined tensor where a factorisation
// fails. Each intermediate n x n factor is released as soon as the next one
// exists: at a LLaMA-7B down_proj (11008 columns) each is 485 MB, and keeping
// them all was the run's peak memory.
at::Tensor factor_damped(const at::Tensor& damped, InverseFactor how) {
  at::Tensor upper;
  if (how == InverseFactor::one_cholesky) {
    auto [lower, info] = at::linalg_cholesky_ex(damped.flip({0, 1}));
    if (info.item<int>() != 0) return {};
    at::Tensor inverse = lower_triangular_inverse(lower);
    lower.reset();
    upper = inverse.flip({0, 1});
  } else {
    auto [lower, info] = at::linalg_cholesky_ex(damped);
    if (info.item<int>() != 0) return {};
    at::Tensor inverse = at::cholesky_inverse(lower);
    lower.reset();
    auto [factor, info_upper] = at::linalg_cholesky_ex(inverse, /*upper=*/true);
    if (info_upper.item<int>() != 0) return {};
    upper = std::move(factor);
  }
  if (!all_finite(upper)) return {};
  return upper.contiguous();  // LAPACK hands back column-major strides; the column loop reads rows
}

// One attempt at U for H + percdamp * mean(diag H) * I. H is damped in place
// (no n x n copy) and its diagonal put back after, bit for bit. The damping
// is a float32 tensor product, as the reference's.
at::Tensor try_inverse_factor(at::Tensor& H, double percdamp, InverseFactor how) {
  const at::Tensor diagonal = H.diagonal().clone();
  const at::Tensor damping = H.diagonal().mean() * percdamp;  // over the strided view: the summation order of before
  H.diagonal().add_(damping);
  at::Tensor upper = factor_damped(H, how);
  H.diagonal().copy_(diagonal);
  return upper;
}

// inverse_hessian_factor on a Hessian the caller owns: damped in place.
at::Tensor inverse_factor_of_own(at::Tensor& H, double percdamp, const std::string& name, double* percdamp_used,
                                 int* retries, InverseFactor how) {
  double factor = percdamp;
  for (int attempt = 0; attempt <= kMaxDampingRetries; ++attempt) {
    // percdamp 0 that fails starts the retries from 1e-6 of the mean diagonal.
    if (attempt > 0) factor = factor > 0 ? factor * 10 : 1e-6;
    at::Tensor upper = try_inverse_factor(H, factor, how);
    if (upper.defined()) {
      if (percdamp_used) *percdamp_used = factor;
      if (retries) *retries = attempt;
      return upper;
    }
    log::warn(str_cat(name, ": Hessian not positive definite with percdamp ", factor, "; retrying with more damping"));
  }
  throw Error(str_cat(name, ": the Hessian is not positive definite even with percdamp ", factor,
                      " (degenerate calibration data?)"));
}

// The fused CPU column loop of one block: phase 1 once, then phase 2 for the
// rows in parallel (each thread a range of groups of 8 rows with its own
// buffer): 8 rows at a time with AVX2 where the CPU has it (the same bits),
// else and for the last rows one at a time.
void run_block_on_cpu(const kernels::BlockProblem& problem, bool per_row) {
  constexpr int64_t kGroup = kernels::kGptqPbRowsPerAvx2Walk;
  static const bool avx2 = kernels::gptq_pb_rows_avx2_available();
  const bool eight_at_a_time = avx2 && !per_row;
  std::vector<float> u_block(static_cast<size_t>(problem.n * problem.n));
  kernels::load_u_block(problem, u_block.data(), 0, 1);
  const int64_t groups = (problem.rows + kGroup - 1) / kGroup;
  at::parallel_for(0, groups, 2, [&](int64_t begin, int64_t end) {
    std::vector<float> buffer(static_cast<size_t>(problem.n * kGroup));
    for (int64_t group = begin; group < end; ++group) {
      const int64_t first = group * kGroup, last = std::min(problem.rows, first + kGroup);
      if (eight_at_a_time && last - first == kGroup) {
        kernels::walk_rows8_avx2(problem, u_block.data(), first, buffer.data());
        continue;
      }
      for (int64_t row = first; row < last; ++row) kernels::walk_row(problem, u_block.data(), row, buffer.data());
    }
  });
}

void run_block(const kernels::BlockProblem& problem, ColumnLoop loop, const at::Device& device) {
  if (device.is_cuda()) {
#ifdef PBLLM_WITH_CUDA
    const c10::cuda::CUDAGuard on_device(device);  // the launch goes to the weights' GPU (cuda:N)
    kernels::gptq_pb_block(problem, c10::cuda::getCurrentCUDAStream(device.index()).stream());
    return;
#else
    throw Error("this pbllm was built without CUDA kernels (-DPBLLM_CUDA=OFF)");
#endif
  }
  if (loop == ColumnLoop::emulated_cuda_kernel) {  // in the shape the kernel would take on an H100
    kernels::gptq_pb_block_emulated(problem, kernels::choose_block_launch(problem, kernels::kH100Limits));
    return;
  }
  run_block_on_cpu(problem, loop == ColumnLoop::fused_cpu_per_row);
}

}  // namespace

at::Tensor inverse_hessian_factor(const at::Tensor& H, double percdamp, const std::string& name, double* percdamp_used,
                                  int* retries, InverseFactor how) {
  at::Tensor own = H.clone();
  return inverse_factor_of_own(own, percdamp, name, percdamp_used, retries, how);
}

at::Tensor lower_triangular_inverse(const at::Tensor& L) {
  PBLLM_CHECK(L.dim() == 2 && L.size(0) == L.size(1), "lower_triangular_inverse: not square: ", L.sizes());
  const int64_t n = L.size(0);
  if (n <= kDirectInverse)
    return at::linalg_solve_triangular(L, at::eye(n, L.options()), /*upper=*/false);
  // [[A, 0], [B, C]]^-1 = [[A^-1, 0], [-C^-1 B A^-1, C^-1]]
  const int64_t h = n / 2;
  const at::Tensor a_inverse = lower_triangular_inverse(L.narrow(0, 0, h).narrow(1, 0, h));
  const at::Tensor c_inverse = lower_triangular_inverse(L.narrow(0, h, n - h).narrow(1, h, n - h));
  at::Tensor inverse = at::zeros({n, n}, L.options());
  inverse.narrow(0, 0, h).narrow(1, 0, h).copy_(a_inverse);
  inverse.narrow(0, h, n - h).narrow(1, h, n - h).copy_(c_inverse);
  at::Tensor lower_left = inverse.narrow(0, h, n - h).narrow(1, 0, h);
  at::mm_out(lower_left, c_inverse.mm(L.narrow(0, h, n - h).narrow(1, 0, h)), a_inverse);
  lower_left.neg_();
  return inverse;
}

at::Tensor kth_smallest_score_by_radix(const at::Tensor& scores, int64_t k) {
  PBLLM_CHECK(scores.dim() == 1 && scores.scalar_type() == at::kFloat && k >= 1 && k <= scores.numel(),
              "kth_smallest_score: k = ", k, " of ", scores.sizes(), " ", at::toString(scores.scalar_type()));
  // Non-negative floats order as their bit patterns read as integers, so the
  // k-th smallest is found a digit at a time: the histogram of the top 16 bits
  // (15 of them: the sign is 0) gives the bucket holding it and the count of
  // everything below; the histogram of the low 16 bits of that bucket's
  // entries gives the rest. Everything stays on the device (bincount's own
  // range check aside, no host round trip). The
  // sign bit is cleared so that -0 counts as the 0 it equals.
  constexpr int64_t kLowDigits = int64_t{1} << 16;
  const at::Tensor bits = scores.contiguous().view(at::kInt).bitwise_and(0x7fffffff);
  const at::Tensor high = bits.bitwise_right_shift(16);
  const at::Tensor high_counts = at::bincount(high, {}, kLowDigits / 2);
  const at::Tensor before = high_counts.cumsum(0) < k;  // buckets wholly below the k-th
  const at::Tensor bucket = before.sum();
  const at::Tensor below = at::where(before, high_counts, 0).sum();
  // Entries of other buckets go to an extra bin past the low digits.
  const at::Tensor low = at::where(high == bucket, bits.bitwise_and(kLowDigits - 1), kLowDigits);
  const at::Tensor low_counts = at::bincount(low, {}, kLowDigits + 1).narrow(0, 0, kLowDigits);
  const at::Tensor digit = (low_counts.cumsum(0) < (k - below)).sum();
  return bucket.bitwise_left_shift(16).bitwise_or(digit).to(at::kInt).view(at::kFloat);
}

at::Tensor kth_smallest_score(const at::Tensor& scores, int64_t k) {
  if (scores.is_cuda()) return kth_smallest_score_by_radix(scores, k);
  return std::get<0>(scores.kthvalue(k));
}

at::Tensor binarized_mask(const at::Tensor& W, const at::Tensor& U, SalientMetric metric, double low_frac,
                          int64_t groupsize) {
  const auto timed = report::timed(report::Phase::mask);
  const int64_t columns = W.size(1);
  const int64_t group_columns = groupsize > 0 ? groupsize : columns;
  at::Tensor mask = at::empty(W.sizes(), W.options().dtype(at::kBool));
  const at::Tensor diagonal = at::diag(U);
  for (int64_t start = 0; start < columns; start += group_columns) {
    const int64_t width = std::min(group_columns, columns - start);
    const at::Tensor w = W.narrow(1, start, width);
    const at::Tensor score = metric == SalientMetric::magnitude
                                 ? w.abs()
                                 : w.pow(2) / diagonal.narrow(0, start, width).reshape({1, -1}).pow(2);
    const at::Tensor flat = score.reshape({-1});
    const auto index = static_cast<int64_t>(static_cast<double>(flat.numel()) * low_frac);
    if (index >= flat.numel()) {  // low_frac = 1: everything binarized (the reference indexes past the end)
      mask.narrow(1, start, width).fill_(true);
      continue;
    }
    // The threshold by selection, not a full sort: the (index + 1)-th smallest.
    const at::Tensor threshold = kth_smallest_score(flat, index + 1);
    mask.narrow(1, start, width).copy_(score <= threshold);
  }
  return mask;
}

HessianFactor factor_hessian(const at::Tensor& hessian, const GptqPbOptions& options, const std::string& name) {
  PBLLM_CHECK(hessian.dim() == 2 && hessian.size(0) == hessian.size(1), name, ": the Hessian ", hessian.sizes(),
              " is not square");
  auto timed = report::timed(report::Phase::factorisation);
  // The Hessian itself where it is float32 and contiguous, not a copy (485 MB
  // at a LLaMA-7B down_proj): only its diagonal changes here (dead columns,
  // damping), and the original is put back bit for bit on the way out.
  at::Tensor H = hessian.to(at::kFloat).contiguous();
  PBLLM_CHECK(all_finite(H), name, ": the Hessian has NaN or Inf values (activations overflowed?)");
  struct DiagonalRestorer {
    at::Tensor H, diagonal;
    ~DiagonalRestorer() { H.diagonal().copy_(diagonal); }
  } const restorer{H, H.diagonal().clone()};
  H.diagonal().masked_fill_(restorer.diagonal == 0, 1.0);  // dead columns
  HessianFactor factor;
  factor.upper = inverse_factor_of_own(H, options.percdamp, name, &factor.percdamp_used, &factor.damping_retries,
                                       options.inverse_factor);
  // A retry follows a Cholesky that failed: counted as one more Cholesky.
  const double n = static_cast<double>(H.size(0));
  timed.add_flops(factorisation_flops(H.size(0), options.inverse_factor) + factor.damping_retries * n * n * n / 3);
  return factor;
}

GptqPbResult gptq_pb_quantize(const at::Tensor& weight, const at::Tensor& hessian, const GptqPbOptions& options,
                              const std::string& name, const HessianFactor* factor) {
  options.validate();
  PBLLM_CHECK(weight.dim() == 2 && hessian.dim() == 2 && hessian.size(0) == weight.size(1) &&
                  hessian.size(1) == weight.size(1),
              name, ": weight ", weight.sizes(), " and Hessian ", hessian.sizes(), " do not match");
  at::Tensor W = weight.to(at::kFloat).contiguous().clone();
  PBLLM_CHECK(all_finite(W), name, ": the weight has NaN or Inf values");
  const HessianFactor own = factor != nullptr ? HessianFactor{} : factor_hessian(hessian.to(W.device()), options, name);
  const HessianFactor& shared = factor != nullptr ? *factor : own;
  PBLLM_CHECK(shared.upper.sizes() == hessian.sizes() && shared.upper.device() == W.device() &&
                  shared.upper.scalar_type() == at::kFloat && shared.upper.is_contiguous(),
              name, ": the shared factor ", shared.upper.sizes(), " on ", shared.upper.device(),
              " does not fit the weight (float32, contiguous, the Hessian's shape, the weight's device)");
  const int64_t rows = W.size(0), columns = W.size(1);
  const int64_t groupsize = options.groupsize > 0 ? options.groupsize : columns;
  const int64_t groups = (columns + groupsize - 1) / groupsize;

  GptqPbResult result;
  // The high-bit range comes from the original weights, before dead columns
  // are zeroed (as the reference calibrates it).
  HighBitQuantizer high;
  if (!options.high_range_from_salient) high.calibrate(W, options.high_bit);

  // Dead columns (never activated): W[:, i] = 0 (and H[i, i] = 1 in the factor).
  W.masked_fill_((hessian.diagonal() == 0).to(W.device()).unsqueeze(0), 0.0);

  const at::Tensor& U = shared.upper;
  result.percdamp_used = shared.percdamp_used;
  result.damping_retries = shared.damping_retries;
  result.binarized = binarized_mask(W, U, options.metric, options.low_frac, options.groupsize);
  if (options.high_range_from_salient) high.calibrate(W, options.high_bit, ~result.binarized);
  LowBitQuantizer low(options.low, rows, groups, W.options());
  for (int64_t group = 0; group < groups; ++group) {
    const int64_t start = group * groupsize, width = std::min(groupsize, columns - start);
    low.calibrate(W.narrow(1, start, width), result.binarized.narrow(1, start, width), group);
  }

  const at::Tensor row_loss = at::zeros({rows}, W.options().dtype(at::kDouble));
  at::Tensor errors = at::zeros({rows, std::min(options.blocksize, columns)}, W.options());
  const kernels::HighBitParams high_params = high.params();
  for (int64_t first = 0; first < columns; first += options.blocksize) {
    const int64_t n = std::min(options.blocksize, columns - first);
    if (errors.size(1) != n) errors = at::zeros({rows, n}, W.options());
    const kernels::BlockProblem problem{W.data_ptr<float>(), result.binarized.data_ptr<bool>(), U.data_ptr<float>(),
                                        rows, columns, first, n, high_params, low.params(first / groupsize),
                                        !options.disable_gptq, errors.data_ptr<float>(), row_loss.data_ptr<double>()};
    {
      const auto timed =
          report::timed(report::Phase::column_loop, options.disable_gptq ? 0 : column_loop_flops(rows, n));
      run_block(problem, options.column_loop, W.device());
    }
    const int64_t right = columns - first - n;
    if (options.disable_gptq || right == 0) continue;
    const auto timed = report::timed(report::Phase::trailing_gemms, trailing_gemm_flops(rows, n, right));
    // The columns right of the block take the block's errors in one product.
    W.narrow(1, first + n, right).addmm_(errors, U.narrow(0, first, n).narrow(1, first + n, right), 1.0, -1.0);
  }
  result.loss = row_loss.sum().item<double>() / 2;
  result.high_scale = high.scale();
  result.high_zero = high.zero();
  result.high_maxq = high_params.maxq;
  result.low_mean = low.mean();
  result.low_scale = low.scale();
  result.low_zero = low.zero();
  result.low_maxq = low.maxq();
  result.weight = W;
  result.salient_fraction = 1.0 - result.binarized.to(at::kFloat).mean().item<double>();
  return result;
}

}  // namespace pbllm::quant
