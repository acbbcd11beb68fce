// GPTQ-PB on one Linear (docs/DESIGN.md, "The GPTQ-PB method"): a salient fraction
// of the weights stays at high_bit, the rest goes to the low-bit quantizer,
// and each column's rounding error is pushed onto the columns to its right
// through the upper Cholesky factor U of the damped inverse Hessian.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "pbllm/quant/quantizers.h"

namespace pbllm::quant {

enum class SalientMetric { magnitude, hessian };
SalientMetric salient_metric_from_name(const std::string& name);  // "magnitude", "hessian"

// Who runs the column loop of a CPU-resident weight (a CUDA weight always
// goes to the CUDA kernel).
enum class ColumnLoop {
  fused_cpu,             // the phases of kernels/gptq_pb_phases.h, rows in parallel, 8 at a time with AVX2 where the CPU has it
  fused_cpu_per_row,     // the same, one row at a time (the portable loop; tests and benchmarks)
  emulated_cuda_kernel,  // the CUDA kernel's launch emulated on the host (tests; single-threaded)
};

// How U, the upper Cholesky factor of the damped inverse Hessian, is made.
enum class InverseFactor {
  // The reference's three factorisations: Cholesky of H, cholesky_inverse,
  // Cholesky of the inverse (its exact float32 roundings).
  reference,
  // One Cholesky and one triangular inverse: with J the order reversal and
  // J H J = L L^T, U = J L^-1 J (U^T U = J L^-T L^-1 J = H^-1, and J L^-1 J is
  // upper triangular with a positive diagonal, so it is the Cholesky factor).
  // 1.3x-1.5x faster on the CPU; U agrees to a few float32 ulps.
  one_cholesky,
};
InverseFactor inverse_factor_from_name(const std::string& name);  // "reference", "one-cholesky"
// The FLOPs of the work as the CPU code does it (the profile's floors, the
// plan's time), for a Hessian of side n and a weight of `rows`:
//   making U: the reference's Cholesky (n^3/3), cholesky_inverse (LAPACK's
//   potri, 2n^3/3) and Cholesky again; or one Cholesky and
//   lower_triangular_inverse;
double factorisation_flops(int64_t n, InverseFactor how);
//   lower_triangular_inverse: a triangular solve against the identity (n^3)
//   up to 512, else two halves and two GEMMs;
double triangular_inverse_flops(int64_t n);
//   the column loop of one block of `width` columns: each column's error
//   reaches the block's columns right of it (2 rows (width - 1 - j) for column j);
double column_loop_flops(int64_t rows, int64_t width);
//   the trailing update of the `right` columns after a block: one GEMM.
double trailing_gemm_flops(int64_t rows, int64_t width, int64_t right);

struct GptqPbOptions {
  LowBitQuantizer::Options low;
  double low_frac = 0.9;  // the binarized fraction: 0.9 keeps 10% salient
  int high_bit = 8;
  SalientMetric metric = SalientMetric::magnitude;
  int64_t blocksize = 128;
  int64_t groupsize = -1;  // -1: one group per row, whatever the blocksize
  double percdamp = 0.01;
  InverseFactor inverse_factor = InverseFactor::one_cholesky;  // the reference's numbers held: README, "--inverse-factor"
  bool disable_gptq = false;
  // Correction: the high-bit range from the salient weights only (the
  // reference takes it over all weights of the row).
  bool high_range_from_salient = false;
  ColumnLoop column_loop = ColumnLoop::fused_cpu;
  // The layer driver's: the dtype the calibration activations (a layer's
  // inputs and outputs for every window) are held in between layers;
  // Undefined: the compute dtype. Each window is computed in the compute
  // dtype. 16 bits halve the largest item of a big run's memory.
  at::ScalarType calibration_dtype = at::ScalarType::Undefined;

  // One-line errors for values out of range (low_frac outside [0, 1], ...).
  void validate() const;
};

struct GptqPbResult {
  at::Tensor weight;     // quantized, float32 [rows, columns]
  at::Tensor binarized;  // bool [rows, columns]: true where the low-bit quantizer was used
  double loss = 0;       // the reference's "error": sum of (w - q)^2 / d^2, halved
  double salient_fraction = 0;
  double percdamp_used = 0;  // after any retries
  int damping_retries = 0;
  // The quantizers' parameters, on the weight's device (the packed format stores them).
  at::Tensor high_scale, high_zero;            // float32 [rows]
  at::Tensor low_mean, low_scale, low_zero;    // float32 [groups, rows]
  float high_maxq = 0, low_maxq = 0;
};

// U, the upper Cholesky factor of (H + percdamp * mean(diag H) * I)^-1. A
// factorisation that fails multiplies the damping by 10 and retries (at most
// 6 times), logging each retry with `name`.
at::Tensor inverse_hessian_factor(const at::Tensor& H, double percdamp, const std::string& name, double* percdamp_used,
                                  int* retries, InverseFactor how);
// The inverse of a lower-triangular matrix by recursive halving: each level
// two half-size inverses and two GEMMs, 2n^3/3 flops at the GEMM rate (a
// triangular solve against the identity would take n^3).
at::Tensor lower_triangular_inverse(const at::Tensor& L);

// The k-th smallest (1-based) of `scores`, 1-d float32, non-negative and
// finite, as a 0-dim tensor on their device: kthvalue's value. On a GPU by a
// two-digit radix select (histograms of the top and low 16 bits): CUDA's
// kthvalue runs one thread block over the whole tensor (235M entries for a
// 70B Linear with groupsize -1). On the CPU, kthvalue's quickselect: the
// radix select measured 0.8x to 1.4x its speed there (scripts/bench_gptq.sh).
at::Tensor kth_smallest_score(const at::Tensor& scores, int64_t k);
// The radix select itself, on any device (what the GPU runs; tested on the CPU).
at::Tensor kth_smallest_score_by_radix(const at::Tensor& scores, int64_t k);

// true = binarized: per column group, score <= the element at index
// floor(count * low_frac) of the ascending scores (all of them at low_frac = 1).
// score = |W| (magnitude) or W^2 / diag(U)^2 (hessian).
at::Tensor binarized_mask(const at::Tensor& W, const at::Tensor& U, SalientMetric metric, double low_frac,
                          int64_t groupsize);

// U of a Hessian (its dead columns, never activated, set to H[i, i] = 1
// first) and the damping it took. It depends on the Hessian and the options
// only, so the Linears that share one (q/k/v, gate/up) can share it too.
struct HessianFactor {
  at::Tensor upper;
  double percdamp_used = 0;
  int damping_retries = 0;
};
// The factorisation works on `hessian` itself (no n x n copy): its diagonal
// changes during the call and is put back, bit for bit, before it returns.
HessianFactor factor_hessian(const at::Tensor& hessian, const GptqPbOptions& options, const std::string& name);

// Quantizes weight [rows, columns] (any float dtype) with Hessian [columns,
// columns] (float32), through `factor` when given (factor_hessian of that
// Hessian: the same numbers, one factorisation fewer). NaN / Inf in either
// stops with `name` in the message.
GptqPbResult gptq_pb_quantize(const at::Tensor& weight, const at::Tensor& hessian, const GptqPbOptions& options,
                              const std::string& name, const HessianFactor* factor = nullptr);

}  // namespace pbllm::quant
