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
// A row may also be walked by several threads, its "lanes" (a power of two):
// lane l owns the columns j = l (mod lanes), keeps them in its buffer at
// j / lanes, quantizes them and applies every error to them, so the only
// value that crosses lanes is the error of the column just quantized. Each
// column sees the same operations in the same order whatever the lanes:
// every launch shape gives the same bits. walk_row is the one-lane walk.
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

// The lanes of one row: this thread's lane and log2 of their number.
struct RowLanes {
  int lane, shift;
};

// Phase 2a: the lane's columns of the row into its buffer (column j at j / lanes).
PBLLM_HOST_DEVICE inline void load_row_columns(const BlockProblem& p, int64_t row, RowLanes lanes, float* buffer) {
  const float* w_row = p.weights + row * p.columns + p.first;
  for (int64_t j = lanes.lane; j < p.n; j += int64_t{1} << lanes.shift) buffer[j >> lanes.shift] = w_row[j];
}

// Phase 2b, by the lane that owns column i (i = lane mod lanes): quantize it,
// write the value and the error, add its loss; returns the error e, 0 without
// compensation. Its buffer entry is final: only this lane ever changed it.
PBLLM_HOST_DEVICE inline float quantize_column(const BlockProblem& p, const float* u_block, int64_t row, int64_t i,
                                               int shift, const float* buffer, double& loss) {
  const float w = buffer[i >> shift];
  const bool binarized = p.binarized[row * p.columns + p.first + i];
  const float q = binarized ? quantize_low(w, row, p.low) : quantize_high(w, row, p.high);
  const float d = u_block[i * p.n + i];
  const float difference = w - q;
  // Rounded as the reference's float32 tensor ops: square, divide, then accumulate.
  loss += static_cast<double>(difference * difference / (d * d));
  p.weights[row * p.columns + p.first + i] = q;
  if (!p.compensate) return 0.0f;
  const float e = difference / d;
  p.errors[row * p.n + i] = e;
  return e;
}

// Phase 2c, every lane: column i's error onto the lane's columns after i.
PBLLM_HOST_DEVICE inline void apply_error(const BlockProblem& p, const float* u_block, int64_t i, float e,
                                          RowLanes lanes, float* buffer) {
  const float* u_row = u_block + i * p.n;
  const int64_t count = int64_t{1} << lanes.shift;
  // The lane's first column after i: i + 1 rounded up to lane (mod lanes).
  const int64_t first = i + 1 + ((lanes.lane - (i + 1)) & (count - 1));
  for (int64_t j = first; j < p.n; j += count) buffer[j >> lanes.shift] -= e * u_row[j];
}

// Phase 2 by one thread: row `row` walks the block; `buffer` holds n floats private to the row.
PBLLM_HOST_DEVICE inline void walk_row(const BlockProblem& p, const float* u_block, int64_t row, float* buffer) {
  const RowLanes alone{0, 0};
  load_row_columns(p, row, alone, buffer);
  double loss = 0;
  for (int64_t i = 0; i < p.n; ++i) {
    const float e = quantize_column(p, u_block, row, i, alone.shift, buffer, loss);
    if (p.compensate) apply_error(p, u_block, i, e, alone, buffer);
  }
  p.row_loss[row] += loss;
}

// One thread of the block kernel (kernels/gptq_pb_block.cu) and of its host
// emulation, which call these steps in the kernel's order:
//   load_u_block; barrier; start_walk;
//   for each column i: quantize_step; barrier (the row's warp); apply_step;
//   finish_walk.
// The CUDA block's shared memory: the rows' losses, their error slots, then U.
// A row's error goes through a slot chosen by the parity of its column, so one
// barrier per column suffices: the slot written at column i + 2 was last read
// at column i, before every lane reached column i + 1's barrier.
struct BlockShared {
  double* row_loss;   // [rows per block]: the loss of the block's columns, added in column order
  float* error_slot;  // [rows per block][2]
  float* u_block;     // [n][n]
};

PBLLM_HOST_DEVICE inline int64_t block_shared_floats(int64_t rows_per_block, int64_t n) {
  return rows_per_block * 2 /* the losses, as floats */ + rows_per_block * 2 + n * n;
}

PBLLM_HOST_DEVICE inline BlockShared carve_block_shared(double* base, int64_t rows_per_block) {
  float* slots = reinterpret_cast<float*>(base + rows_per_block);
  return {base, slots, slots + 2 * rows_per_block};
}

struct BlockThread {
  int64_t row;    // the matrix row it walks
  int local_row;  // that row within the CUDA block
  RowLanes lanes;
  bool live;      // row < rows: the last block's spare threads still reach every barrier
};

PBLLM_HOST_DEVICE inline BlockThread block_thread(const BlockProblem& p, int64_t block, int thread, int threads,
                                                  int lane_shift) {
  const int local_row = thread >> lane_shift;
  const int64_t row = block * (threads >> lane_shift) + local_row;
  return {row, local_row, {thread & ((1 << lane_shift) - 1), lane_shift}, row < p.rows};
}

PBLLM_HOST_DEVICE inline void start_walk(const BlockProblem& p, const BlockThread& t, const BlockShared& shared,
                                         float* buffer) {
  if (!t.live) return;
  if (t.lanes.lane == 0) shared.row_loss[t.local_row] = 0;  // lane 0 also owns column 0: no barrier needed
  load_row_columns(p, t.row, t.lanes, buffer);
}

PBLLM_HOST_DEVICE inline void quantize_step(const BlockProblem& p, const BlockThread& t, const BlockShared& shared,
                                            int64_t i, const float* buffer) {
  if (!t.live || t.lanes.lane != (i & ((int64_t{1} << t.lanes.shift) - 1))) return;
  shared.error_slot[2 * t.local_row + (i & 1)] =
      quantize_column(p, shared.u_block, t.row, i, t.lanes.shift, buffer, shared.row_loss[t.local_row]);
}

PBLLM_HOST_DEVICE inline void apply_step(const BlockProblem& p, const BlockThread& t, const BlockShared& shared,
                                         int64_t i, float* buffer) {
  if (!t.live || !p.compensate) return;
  apply_error(p, shared.u_block, i, shared.error_slot[2 * t.local_row + (i & 1)], t.lanes, buffer);
}

// After the last column's barrier, lane 0 sees the row's whole loss.
PBLLM_HOST_DEVICE inline void finish_walk(const BlockProblem& p, const BlockThread& t, const BlockShared& shared) {
  if (t.live && t.lanes.lane == 0) p.row_loss[t.row] += shared.row_loss[t.local_row];
}

}  // namespace pbllm::kernels
