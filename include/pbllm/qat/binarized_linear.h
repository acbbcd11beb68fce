// PB-LLM's QAT Linear, the reference's BinaryXnorExceptOutliersLinear
// (quant/outlier_quantizer.py): a fraction of "outlier" (salient) weights is
// kept at 8 bits and frozen, the others are sign(w) times one scale, and the
// latent float weights train through a straight-through sign.
//
// The reference's quirks are reproduced by default (QatCorrections fixes each):
//   - weight_quant_8bit's zero point is round(min) (an integer, usually 0),
//     so (w - zp) / range * 255 is negative for every negative weight, and the
//     cast to uint8 wraps it modulo 256: negative weights come back as large
//     positive ones (the binarized ones then have sign +1);
//   - the binary scale is one scalar per matrix (w[~mask] flattens before
//     .mean(-1));
//   - the scale the saved weights use is the one of the last training forward,
//     computed before the last optimizer step.
#pragma once

#include <ATen/core/Tensor.h>

namespace pbllm::qat {

struct QatCorrections {
  bool zero_point = false;     // 8-bit zero point = the row's min: codes 0..255, no wrap
  bool per_row_scale = false;  // a binary scale per output row
  bool fresh_scale = false;    // the saved weights' scale from the final latent weights
  bool keep_head = false;      // the head (lm_head) stays a full-precision Linear, untrained
};

// The reference's weight_quant_8bit(w), simulated: per row, range = max - min,
// codes round((w - zp) / range * 255) cast to uint8 as torch casts (modulo
// 256), values codes * (range / 255) + zp, with zp = round(min), or min with
// `unrounded_zero_point`. A row whose range is 0 keeps its values (the
// reference divides by zero there).
at::Tensor weight_quant_8bit(const at::Tensor& w, bool unrounded_zero_point);

// The grid weight_quant_8bit puts each row of w on, as the packed format's
// affine high-bit grid holds it: value = code * step + offset in float32
// (step = range / 255, offset = zp), each [rows]. A row kept as it is gets
// offset = its value (code 0).
struct EightBitGrid {
  at::Tensor step, offset;
};
EightBitGrid eight_bit_grid(const at::Tensor& w, bool unrounded_zero_point);

// The reference's magnitude outliers: w < kthvalue(w, int(n F / 2)) or
// w > kthvalue(w, int(n (1 - F / 2))) over the whole matrix. A fraction that
// selects no order statistic (n F / 2 < 1) is an error naming `name`.
at::Tensor magnitude_outliers(const at::Tensor& w, double fraction, const std::string& name);

// mean |w| over the weights that are not outliers: one scalar [1, 1], or per
// row [rows, 1] (a row of outliers only gets 0). Detached.
at::Tensor binary_scale(const at::Tensor& w, const at::Tensor& outliers, bool per_row);

// sign(w) whose gradient is the incoming one, unchanged and unclipped (the
// reference's STEBinary).
at::Tensor sign_ste(const at::Tensor& w);

// where(outliers, w, sign_ste(w) * scale); the outliers' w is detached
// (frozen) unless `train_outliers`.
at::Tensor partially_binarized(const at::Tensor& w, const at::Tensor& outliers, const at::Tensor& scale,
                               bool train_outliers);

}  // namespace pbllm::qat
