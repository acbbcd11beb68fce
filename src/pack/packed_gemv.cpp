#include "pbllm/pack/packed_gemv.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include "packed_gemv.h"
#include "pbllm/core/check.h"

namespace pbllm::pack {
namespace {

kernels::ValueRounding rounding_of(at::ScalarType dtype) {
  if (dtype == at::kHalf) return kernels::ValueRounding::half;
  if (dtype == at::kBFloat16) return kernels::ValueRounding::bfloat16;
  return kernels::ValueRounding::none;
}

}  // namespace

bool PackedGemv::supports(const PackedLinear& p) {
  const bool one_bit = p.method == LowBitMethod::xnor || p.method == LowBitMethod::sign;
  const bool whole_words = p.group_columns == p.columns || p.group_columns % 64 == 0;
  return one_bit && p.high_bit <= 8 && whole_words && p.columns <= 65536;  // columns as uint16
}

PackedGemv::PackedGemv(const PackedLinear& p)
    : rows_(p.rows), columns_(p.columns), words_((p.columns + 63) / 64), dtype_(p.dtype) {
  PBLLM_CHECK(supports(p), p.name, ": the packed GEMV takes xnor / sign Linears with high_bit <= 8 and groups of a "
                                   "multiple of 64 columns, at most 65536 columns");
  group_words_ = p.group_columns == p.columns ? words_ : p.group_columns / 64;
  groups_ = (words_ + group_words_ - 1) / group_words_;
  signs_ = at::zeros({rows_, words_}, at::kLong);
  salient_columns_ = at::empty({p.salient}, at::kShort);
  codes_ = at::empty({p.salient}, at::kByte);
  salient_start_ = at::zeros({rows_ + 1}, at::kLong);
  auto* signs = reinterpret_cast<uint64_t*>(signs_.data_ptr<int64_t>());
  auto* salient_columns = reinterpret_cast<uint16_t*>(salient_columns_.data_ptr<int16_t>());
  uint8_t* codes = codes_.data_ptr<uint8_t>();
  int64_t* salient_start = salient_start_.data_ptr<int64_t>();
  // The codes as the decoder reads them, into bit planes and a byte per salient weight.
  CodeCursor low = low_code_cursor(p, 0), high = high_code_cursor(p, 0);
  std::vector<int64_t> positions;
  int64_t salient_count = 0;
  const int64_t blocks = (p.rows + kMaskRowsPerBlock - 1) / kMaskRowsPerBlock;
  for (int64_t block = 0; block < blocks; ++block) {
    walk_block(
        p, block, positions,
        [&](int64_t row, int64_t begin, int64_t end) {
          for (int64_t c = begin; c < end; ++c)
            if (low.next()) signs[row * words_ + c / 64] |= uint64_t{1} << (c % 64);
        },
        [&](int64_t row, int64_t column) {
          salient_columns[salient_count] = static_cast<uint16_t>(column);
          codes[salient_count++] = static_cast<uint8_t>(high.next());
          salient_start[row + 1] = salient_count;
        });
  }
  for (int64_t row = 0; row < rows_; ++row) salient_start[row + 1] = std::max(salient_start[row + 1], salient_start[row]);
  one_value_ = at::empty({groups_, rows_}, at::kFloat);
  zero_value_ = at::empty({groups_, rows_}, at::kFloat);
  float* one = one_value_.data_ptr<float>();
  float* zero = zero_value_.data_ptr<float>();
  for (int64_t g = 0; g < groups_; ++g)
    for (int64_t row = 0; row < rows_; ++row) {
      one[g * rows_ + row] = low_code_value(p, g, row, 1);
      zero[g * rows_ + row] = low_code_value(p, g, row, 0);
    }
  high_scale_ = p.high_scale.contiguous();
  high_zero_ = p.high_zero.to(at::kFloat).contiguous();
  // An xnor weight at its mean (sign 0) is stored as code 0: the kernel counts
  // it as zero_value; the difference is added back after the kernel.
  if (p.method == LowBitMethod::xnor && p.zero_signs.numel() > 0) {
    zero_sign_entries_ = p.zero_signs.clone();
    zero_sign_deltas_ = at::empty({p.zero_signs.numel()}, at::kFloat);
    for (int64_t i = 0; i < p.zero_signs.numel(); ++i) {
      const int64_t entry = p.zero_signs.data_ptr<int64_t>()[i];
      const int64_t row = entry / columns_, group = (entry % columns_) / p.group_columns;
      zero_sign_deltas_.data_ptr<float>()[i] = zero_sign_value(p, entry) - zero[group * rows_ + row];
    }
  }
}

bool PackedGemv::avx2_available() { return kernels::packed_gemv_avx2_available(); }

int64_t PackedGemv::resident_bytes() const {
  int64_t bytes = 0;
  for (const at::Tensor* t : {&signs_, &salient_columns_, &codes_, &salient_start_, &one_value_, &zero_value_, &high_scale_,
                              &high_zero_, &zero_sign_entries_, &zero_sign_deltas_})
    if (t->defined()) bytes += static_cast<int64_t>(t->nbytes());
  return bytes;
}

at::Tensor PackedGemv::operator()(const at::Tensor& x, GemvKernel kernel) const {
  PBLLM_CHECK(x.dim() == 1 && x.size(0) == columns_, "packed GEMV: x has shape ", x.sizes(), ", expected [",
              columns_, "]");
  if (kernel == GemvKernel::best) kernel = kernels::packed_gemv_avx2_available() ? GemvKernel::avx2 : GemvKernel::portable;
  PBLLM_CHECK(kernel != GemvKernel::avx2 || kernels::packed_gemv_avx2_available(),
              "packed GEMV: this CPU has no AVX2 / F16C");
  // x padded with zeros to whole words, and its sum per group.
  at::Tensor padded = at::zeros({words_ * 64}, at::kFloat);
  padded.narrow(0, 0, columns_).copy_(x.to(at::kCPU, at::kFloat));
  const at::Tensor group_sums = at::empty({groups_}, at::kFloat);
  const float* xp = padded.data_ptr<float>();
  float* sums = group_sums.data_ptr<float>();
  for (int64_t g = 0; g < groups_; ++g) {
    float sum = 0;
    for (int64_t c = g * group_words_ * 64; c < std::min(words_, (g + 1) * group_words_) * 64; ++c) sum += xp[c];
    sums[g] = sum;
  }
  // The portable kernel's lookup tables (the AVX2 one masks x directly).
  const at::Tensor byte_sums = kernel == GemvKernel::portable ? at::empty({words_ * 8, 256}, at::kFloat) : at::Tensor();
  if (byte_sums.defined()) kernels::packed_gemv_byte_sums(xp, words_, byte_sums.data_ptr<float>());
  at::Tensor y = at::empty({rows_}, at::kFloat);
  const kernels::PackedGemvProblem problem{
      rows_, columns_, words_, group_words_, groups_,
      reinterpret_cast<const uint64_t*>(signs_.data_ptr<int64_t>()),
      reinterpret_cast<const uint16_t*>(salient_columns_.data_ptr<int16_t>()), codes_.data_ptr<uint8_t>(),
      salient_start_.data_ptr<int64_t>(), one_value_.data_ptr<float>(),
      zero_value_.data_ptr<float>(), high_scale_.data_ptr<float>(), high_zero_.data_ptr<float>(),
      rounding_of(dtype_), xp, sums, byte_sums.defined() ? byte_sums.data_ptr<float>() : nullptr, y.data_ptr<float>()};
  at::parallel_for(0, rows_, 64, [&](int64_t begin, int64_t end) {
    if (kernel == GemvKernel::avx2) {
      kernels::packed_gemv_rows_avx2(problem, begin, end);
    } else {
      kernels::packed_gemv_rows_portable(problem, begin, end);
    }
  });
  if (zero_sign_entries_.defined()) {
    float* yp = y.data_ptr<float>();
    for (int64_t i = 0; i < zero_sign_entries_.numel(); ++i) {
      const int64_t entry = zero_sign_entries_.data_ptr<int64_t>()[i];
      yp[entry / columns_] += zero_sign_deltas_.data_ptr<float>()[i] * xp[entry % columns_];
    }
  }
  return y;
}

}  // namespace pbllm::pack
