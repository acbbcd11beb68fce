#include "pbllm/pack/packed_gemv.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include "packed_gemv.h"
#include "pbllm/core/check.h"

namespace pbllm::pack {
namespace {

kernels::SalientHigh salient_high_of(at::ScalarType dtype, HighGrid grid) {
  if (dtype == at::kHalf) return kernels::SalientHigh::half;
  if (dtype == at::kBFloat16) return kernels::SalientHigh::bfloat16;
  return grid == HighGrid::affine ? kernels::SalientHigh::affine_code : kernels::SalientHigh::code;
}

// The high 16 bits of a salient word (kernels/packed_gemv.h): the decoded
// value's bits in a 16-bit checkpoint dtype, else the code.
uint32_t salient_high_bits(const PackedLinear& p, const at::Tensor& high_zero, int64_t row, uint32_t code) {
  if (p.dtype != at::kHalf && p.dtype != at::kBFloat16) return code;
  const float value = high_code_value(p.high_grid, p.high_scale.data_ptr<float>()[row],
                                      high_zero.data_ptr<float>()[row], code, p.dtype);
  return bits_of_value(value, p.dtype);  // exact: value came through the dtype
}

}  // namespace

bool PackedGemv::supports(const PackedLinear& p) {
  const bool one_bit = p.method == LowBitMethod::xnor || p.method == LowBitMethod::sign;
  return one_bit && p.high_bit <= 8 && p.columns <= 65536;  // columns as uint16
}

PackedGemv::PackedGemv(const PackedLinear& p)
    : rows_(p.rows), columns_(p.columns), group_columns_(p.group_columns), groups_(p.groups()), dtype_(p.dtype),
      high_grid_(p.high_grid) {
  PBLLM_CHECK(supports(p), p.name, ": the packed GEMV takes xnor / sign Linears with high_bit <= 8 and at most "
                                   "65536 columns");
  group_triplets_ = (group_columns_ + kernels::kGemvTripletColumns - 1) / kernels::kGemvTripletColumns;
  const int64_t blocks = (rows_ + kernels::kGemvBlockRows - 1) / kernels::kGemvBlockRows;
  const int64_t block_bytes = groups_ * group_triplets_ * kernels::kGemvTripletBytes + 1;
  signs_ = at::zeros({blocks, block_bytes}, at::kByte);
  salient_ = at::empty({p.salient}, at::kInt);
  salient_start_ = at::zeros({rows_ + 1}, at::kLong);
  uint8_t* signs = signs_.data_ptr<uint8_t>();
  auto* salient = reinterpret_cast<uint32_t*>(salient_.data_ptr<int32_t>());
  const at::Tensor high_zero = high_grid_parameter(p);
  int64_t* salient_start = salient_start_.data_ptr<int64_t>();
  // The codes as the decoder reads them, into the sign triplets and a word per salient weight.
  CodeCursor low = low_code_cursor(p, 0), high = high_code_cursor(p, 0);
  std::vector<int64_t> positions;
  int64_t salient_count = 0;
  const int64_t mask_blocks = (p.rows + kMaskRowsPerBlock - 1) / kMaskRowsPerBlock;
  for (int64_t mask_block = 0; mask_block < mask_blocks; ++mask_block) {
    walk_block(
        p, mask_block, positions,
        [&](int64_t row, int64_t begin, int64_t end) {
          uint8_t* block_signs = signs + row / kernels::kGemvBlockRows * block_bytes;
          const int64_t lane_bit = kernels::kGemvTripletColumns * (row % kernels::kGemvBlockRows);
          for (int64_t c = begin; c < end; ++c) {
            if (!low.next()) continue;
            const int64_t in_group = c % group_columns_;
            const int64_t triplet = c / group_columns_ * group_triplets_ + in_group / kernels::kGemvTripletColumns;
            const int64_t bit = lane_bit + in_group % kernels::kGemvTripletColumns;
            block_signs[triplet * kernels::kGemvTripletBytes + bit / 8] |= static_cast<uint8_t>(1u << (bit % 8));
          }
        },
        [&](int64_t row, int64_t column) {
          salient[salient_count++] = static_cast<uint32_t>(column) | salient_high_bits(p, high_zero, row, high.next()) << 16;
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
  high_zero_ = high_zero.contiguous();
  // An xnor weight at its mean (sign 0) is stored as code 0: the kernel counts
  // it as zero_value; the difference is added back after the kernel.
  if (p.method == LowBitMethod::xnor && p.zero_signs.numel() > 0) {
    zero_sign_entries_ = p.zero_signs.clone();
    zero_sign_deltas_ = at::empty({p.zero_signs.numel()}, at::kFloat);
    for (int64_t i = 0; i < p.zero_signs.numel(); ++i) {
      const int64_t entry = p.zero_signs.data_ptr<int64_t>()[i];
      const int64_t row = entry / columns_, group = (entry % columns_) / p.group_columns;
      zero_sign_deltas_.data_ptr<float>()[i] = zero_sign_value(p, i) - zero[group * rows_ + row];
    }
  }
}

bool PackedGemv::avx2_available() { return kernels::packed_gemv_avx2_available(); }

int64_t PackedGemv::resident_bytes() const {
  int64_t bytes = 0;
  for (const at::Tensor* t : {&signs_, &salient_, &salient_start_, &one_value_, &zero_value_, &high_scale_,
                              &high_zero_, &zero_sign_entries_, &zero_sign_deltas_})
    if (t->defined()) bytes += static_cast<int64_t>(t->nbytes());
  return bytes;
}

at::Tensor PackedGemv::operator()(const at::Tensor& x, GemvKernel kernel) const {
  PBLLM_CHECK(x.dim() == 1 && x.size(0) == columns_, "packed GEMV: x has shape ", x.sizes(), ", expected [",
              columns_, "]");
  if (kernel == GemvKernel::best) kernel = kernels::packed_gemv_avx2_available() ? GemvKernel::avx2 : GemvKernel::portable;
  PBLLM_CHECK(kernel != GemvKernel::avx2 || kernels::packed_gemv_avx2_available(),
              "packed GEMV: this CPU has no AVX2 / FMA / F16C");
  const at::Tensor xc = x.to(at::kCPU, at::kFloat).contiguous();
  const float* xp = xc.data_ptr<float>();
  // x's sum per group, and both kernels' lookup tables: the sums of x over each triplet's subsets.
  const at::Tensor group_sums = at::empty({groups_}, at::kFloat);
  float* sums = group_sums.data_ptr<float>();
  for (int64_t g = 0; g < groups_; ++g) {
    float sum = 0;
    for (int64_t c = g * group_columns_; c < std::min(columns_, (g + 1) * group_columns_); ++c) sum += xp[c];
    sums[g] = sum;
  }
  const at::Tensor triplet_sums = at::empty({groups_ * group_triplets_, 8}, at::kFloat);
  kernels::packed_gemv_triplet_sums(xp, columns_, group_columns_, group_triplets_, triplet_sums.data_ptr<float>());
  at::Tensor y = at::empty({rows_}, at::kFloat);
  const kernels::PackedGemvProblem problem{
      rows_, columns_, group_columns_, group_triplets_, groups_, signs_.size(1), signs_.data_ptr<uint8_t>(),
      reinterpret_cast<const uint32_t*>(salient_.data_ptr<int32_t>()), salient_start_.data_ptr<int64_t>(),
      salient_high_of(dtype_, high_grid_), one_value_.data_ptr<float>(), zero_value_.data_ptr<float>(),
      high_scale_.data_ptr<float>(), high_zero_.data_ptr<float>(), xp, sums, triplet_sums.data_ptr<float>(), y.data_ptr<float>()};
  at::parallel_for(0, signs_.size(0), 8, [&](int64_t begin, int64_t end) {
    if (kernel == GemvKernel::avx2) {
      kernels::packed_gemv_blocks_avx2(problem, begin, end);
    } else {
      kernels::packed_gemv_blocks_portable(problem, begin, end);
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
