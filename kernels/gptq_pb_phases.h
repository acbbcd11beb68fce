// The arithmetic of GPTQ-PB's column loop (docs/DESIGN.md, "The GPTQ-PB method" 6)
// as plain functions of pointers and indices, compiled for both host and
// device: the CPU path (src/quant/gptq_pb.cpp), the CUDA kernel
// (kernels/gptq_pb_block.cu) and that kernel's host emulation all call these,
// so the CPU runs the very arithmetic and indexing that the GPU runs.
//
// One block of `n` columns starting at column `first`:
//   phase 1, load_u_block: the block of U (n x n) into shared memory, each
//            thread copying a strided share;
//   phase 2, walk_row:     one row walks the block's columns, quantizing each
//            weight (high- or low-bit by the mask) and pushing its error onto
//            the row's later columns, in a private buffer; it writes the
//            quantized values, the errors [rows, n] (for the update of the
//            columns right of the block, a GEMM) and adds its loss.
// Rows are independent inside a block, which is what makes this parallel.
// No warp intrinsics: the host emulation must run the same code.
#pragma once

#include <math.h>
#include <stdint.h>

#include "pbllm/core/low_bit_methods.h"

#if defined(__CUDACC__)
#define PBLLM_HOST_DEVICE __host__ __device__
#else
#define PBLLM_HOST_DEVICE
#endif

namespace pbllm::kernels {

// Per-row parameters of the high-bit quantizer.
struct HighBitParams {
  const float* scale;
  const float* zero;
  float maxq;
};

// Per-row parameters of the low-bit quantizer for the block's column group.
struct LowBitParams {
  LowBitMethod method;
  const float* mean;
  const float* scale;
  const float* zero;
  float maxq;
};

struct BlockProblem {
  float* weights;           // [rows, columns] row-major; the block's columns become the quantized values
  const bool* binarized;    // [rows, columns]: true = low-bit
  const float* U;           // [columns, columns] row-major, upper triangular
  int64_t rows, columns;
  int64_t first, n;         // the block: columns [first, first + n)
  HighBitParams high;
  LowBitParams low;
  bool compensate;          // false: --disable_gptq (round to nearest)
  float* errors;            // [rows, n]
  double* row_loss;         // [rows], (w - q)^2 / d^2 added per row
};

// torch.round: half to even, as rint in the default rounding mode.
PBLLM_HOST_DEVICE inline float round_half_even(float x) { return rintf(x); }

// Each quantizer as code(w) and value(code), q(w) = value(code(w)): the column
// loop uses both, the packed format (src/pack/) stores codes and decodes them
// with these very functions, which is what makes its round trip exact.

// An asymmetric grid: code = clamp(round(w / scale) + zero, 0, maxq).
PBLLM_HOST_DEVICE inline float grid_code(float w, float scale, float zero, float maxq) {
  return fminf(fmaxf(round_half_even(w / scale) + zero, 0.0f), maxq);
}
PBLLM_HOST_DEVICE inline float grid_value(float code, float scale, float zero) { return scale * (code - zero); }

PBLLM_HOST_DEVICE inline float quantize_high(float w, int64_t row, const HighBitParams& p) {
  return grid_value(grid_code(w, p.scale[row], p.zero[row], p.maxq), p.scale[row], p.zero[row]);
}

// One (group, row)'s low-bit parameters, as values.
struct LowBitRow {
  float mean, scale, zero, maxq;
};

// xnor: sign(w - mean) in {-1, 0, 1} (torch.sign: 0 at the mean); sign: [w > 0];
// 2bit / 4bit: the grid code; no: w itself; prune: 0.
PBLLM_HOST_DEVICE inline float low_code(LowBitMethod method, float w, const LowBitRow& r) {
  switch (method) {
    case LowBitMethod::xnor: {
      const float centred = w - r.mean;
      return centred > 0 ? 1.0f : (centred < 0 ? -1.0f : 0.0f);
    }
    case LowBitMethod::sign:
      return w > 0 ? 1.0f : 0.0f;
    case LowBitMethod::two_bit:
    case LowBitMethod::four_bit:
      return grid_code(w, r.scale, r.zero, r.maxq);
    case LowBitMethod::prune:
      return 0.0f;
    case LowBitMethod::no:
      break;
  }
  return w;
}

PBLLM_HOST_DEVICE inline float low_value(LowBitMethod method, float code, const LowBitRow& r) {
  switch (method) {
    case LowBitMethod::xnor:
      return code * r.scale + r.mean;
    case LowBitMethod::sign:
      return code * r.scale;
    case LowBitMethod::two_bit:
    case LowBitMethod::four_bit:
      return grid_value(code, r.scale, r.zero);
    case LowBitMethod::prune:
      return 0.0f;
    case LowBitMethod::no:
      break;
  }
  return code;
}

PBLLM_HOST_DEVICE inline float quantize_low(float w, int64_t row, const LowBitParams& p) {
  const LowBitRow r{p.mean[row], p.scale[row], p.zero[row], p.maxq};
  return low_value(p.method, low_code(p.method, w, r), r);
}

// Phase 1: U[first:first + n, first:first + n] -> u_block (n x n, row-major).
PBLLM_HOST_DEVICE inline void load_u_block(const BlockProblem& p, float* u_block, int thread, int threads) {
  for (int64_t k = thread; k < p.n * p.n; k += threads) {
    const int64_t i = k / p.n, j = k % p.n;
    u_block[k] = p.U[(p.first + i) * p.columns + p.first + j];
  }
}

// Phase 2: row `row` walks the block; `buffer` holds n floats private to the row.
PBLLM_HOST_DEVICE inline void walk_row(const BlockProblem& p, const float* u_block, int64_t row, float* buffer) {
  float* w_row = p.weights + row * p.columns + p.first;
  const bool* m_row = p.binarized + row * p.columns + p.first;
  for (int64_t j = 0; j < p.n; ++j) buffer[j] = w_row[j];
  double loss = 0;
  for (int64_t i = 0; i < p.n; ++i) {
    const float w = buffer[i];
    const float q = m_row[i] ? quantize_low(w, row, p.low) : quantize_high(w, row, p.high);
    const float* u_row = u_block + i * p.n;
    const float d = u_row[i];
    const float difference = w - q;
    // Rounded as the reference's float32 tensor ops: square, divide, then accumulate.
    loss += static_cast<double>(difference * difference / (d * d));
    w_row[i] = q;
    if (!p.compensate) continue;
    const float e = difference / d;
    p.errors[row * p.n + i] = e;
    for (int64_t j = i + 1; j < p.n; ++j) buffer[j] -= e * u_row[j];
  }
  p.row_loss[row] += loss;
}

}  // namespace pbllm::kernels
