#include "pbllm/pack/packed_linear.h"

#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "gptq_pb_phases.h"
#include "pbllm/core/check.h"
#include "pbllm/pack/bit_stream.h"

namespace pbllm::pack {
namespace {

using kernels::LowBitRow;

// A float32 rounded through the checkpoint's dtype, as Tensor::to rounds it
// (round to nearest even): the value the fake-quant checkpoint holds.
float through_dtype(float value, at::ScalarType dtype) {
  switch (dtype) {
    case at::kHalf:
      return static_cast<float>(c10::Half(value));
    case at::kBFloat16:
      return static_cast<float>(c10::BFloat16(value));
    default:
      return value;
  }
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

float low_maxq(LowBitMethod method) { return static_cast<float>(std::max(low_bit_method_traits(method).levels - 1, 1)); }

at::Tensor cpu_float(const at::Tensor& t) { return t.to(at::kCPU, at::kFloat).contiguous(); }

at::Tensor bytes_tensor(const std::vector<uint8_t>& bytes) {
  at::Tensor t = at::empty({static_cast<int64_t>(bytes.size())}, at::kByte);
  if (!bytes.empty()) std::memcpy(t.data_ptr<uint8_t>(), bytes.data(), bytes.size());
  return t;
}

// The value of high code `code` of a row, before the dtype (packed_linear.h, HighGrid).
float high_grid_value(HighGrid grid, float code, float scale, float zero_or_offset) {
  return grid == HighGrid::affine ? code * scale + zero_or_offset : kernels::grid_value(code, scale, zero_or_offset);
}

// The grid code whose value is q exactly (q came off this grid); -1 if none.
int grid_code_of(HighGrid grid, float q, float scale, float zero_or_offset, float maxq) {
  const float guess = grid == HighGrid::affine
                          ? std::fmin(std::fmax(kernels::round_half_even((q - zero_or_offset) / scale), 0.0f), maxq)
                          : kernels::grid_code(q, scale, zero_or_offset, maxq);
  for (const float code : {guess, guess - 1, guess + 1})
    if (code >= 0 && code <= maxq && same_bits(high_grid_value(grid, code, scale, zero_or_offset), q))
      return static_cast<int>(code);
  return -1;
}

// The low code whose value is q exactly: the quantizer's own code of q first
// (a value on the grid quantizes to itself), then the other levels.
bool low_code_of(LowBitMethod method, float q, const LowBitRow& r, float* code) {
  const float own = kernels::low_code(method, q, r);
  if (same_bits(kernels::low_value(method, own, r), q)) return *code = own, true;
  const int levels = low_bit_method_traits(method).levels;
  for (int level = 0; level < levels; ++level) {
    const float candidate = method == LowBitMethod::xnor ? static_cast<float>(level * 2 - 1) : static_cast<float>(level);
    if (same_bits(kernels::low_value(method, candidate, r), q)) return *code = candidate, true;
  }
  if (method == LowBitMethod::xnor && same_bits(kernels::low_value(method, 0.0f, r), q)) return *code = 0.0f, true;
  return false;
}

// The quantizer's code of a stored code: xnor stores sign +1 as 1 and -1 as
// 0 (its sign 0 is listed in zero_signs).
float stored_code(LowBitMethod method, uint32_t code) {
  return method == LowBitMethod::xnor ? static_cast<float>(2 * static_cast<int>(code) - 1) : static_cast<float>(code);
}

struct Parameters {
  const float *high_scale, *high_zero, *low_mean, *low_scale, *low_zero;
  int64_t rows, group_columns;
  float high_maxq, low_maxq;
  LowBitRow low(int64_t row, int64_t column) const {
    const int64_t at = (column / group_columns) * rows + row;
    return {low_mean ? low_mean[at] : 0.0f, low_scale ? low_scale[at] : 0.0f, low_zero ? low_zero[at] : 0.0f, low_maxq};
  }
};

// The high-bit grid of a row range, as HighBitQuantizer::calibrate computes it.
float grid_scale(float low, float high, float maxq) { return (high - low) / maxq; }
float grid_zero(float low, float scale) { return kernels::round_half_even(-low / scale); }

// The 16-bit values of `dtype` in order of value: key k -> bits (sign and magnitude).
struct Ordered16 {
  static int32_t key(uint16_t bits) { return bits & 0x8000u ? -static_cast<int32_t>(bits & 0x7fffu) : bits; }
  static uint16_t bits(int32_t key) { return static_cast<uint16_t>(key < 0 ? 0x8000u | static_cast<uint32_t>(-key) : key); }
};

float value_of_bits(uint16_t bits, at::ScalarType dtype) {
  return dtype == at::kHalf ? static_cast<float>(c10::Half(bits, c10::Half::from_bits()))
                            : static_cast<float>(c10::BFloat16(bits, c10::BFloat16::from_bits()));
}

// A row range (low, high) in `dtype` whose grid is exactly (scale, zero), or
// false. The quantizer took the range from the row's weights, which the
// checkpoint's dtype holds, so low is one of the few values of that dtype
// with round(-low / scale) = zero, and high = low + maxq * scale to within a
// rounding: both are searched near there and the grid recomputed.
bool find_range(float scale, float zero, float maxq, at::ScalarType dtype, uint16_t range[2]) {
  constexpr int32_t kLowSteps = 512, kHighSteps = 2;
  auto key_near = [&](float value) { return Ordered16::key(bits_of_value(value, dtype)); };
  auto fits = [&](int32_t low_key) {
    const float low = value_of_bits(Ordered16::bits(low_key), dtype);
    if (!std::isfinite(low) || !same_bits(grid_zero(low, scale), zero)) return false;
    const int32_t high_key = key_near(low + maxq * scale);
    for (int32_t k = high_key - kHighSteps; k <= high_key + kHighSteps; ++k) {
      const float high = value_of_bits(Ordered16::bits(k), dtype);
      const float s = grid_scale(low, high, maxq);
      if (std::isfinite(high) && same_bits(s, scale) && same_bits(grid_zero(low, s), zero)) {
        range[0] = Ordered16::bits(low_key), range[1] = Ordered16::bits(k);
        return true;
      }
    }
    return false;
  };
  // Outward from -zero * scale (0 first when zero is 0: a row without negative weights).
  const int32_t centre = key_near(-zero * scale);
  for (int32_t step = 0; step <= kLowSteps; ++step)
    if (fits(centre + step) || (step > 0 && fits(centre - step))) return true;
  return false;
}

// high_range for a 16-bit checkpoint dtype when every row's grid has one
// (32 bits a row instead of 40 or 64), else undefined.
at::Tensor high_range_of(const at::Tensor& high_scale, const at::Tensor& high_zero, float maxq, at::ScalarType dtype) {
  if (dtype != at::kHalf && dtype != at::kBFloat16) return {};
  const int64_t rows = high_scale.numel();
  at::Tensor range = at::empty({rows, 2}, at::kShort);
  auto* out = reinterpret_cast<uint16_t*>(range.data_ptr<int16_t>());
  for (int64_t row = 0; row < rows; ++row)
    if (!find_range(high_scale.data_ptr<float>()[row], high_zero.data_ptr<float>()[row], maxq, dtype, out + 2 * row))
      return {};
  return range.view(dtype);
}

// The value of each stored code of each (group, row), in `dtype`: [groups, rows, levels].
at::Tensor code_values(const Parameters& params, int64_t groups, int levels, LowBitMethod method,
                       at::ScalarType dtype) {
  at::Tensor values = at::empty({groups, params.rows, levels}, at::kFloat);
  float* out = values.data_ptr<float>();
  for (int64_t group = 0; group < groups; ++group)
    for (int64_t row = 0; row < params.rows; ++row)
      for (int code = 0; code < levels; ++code)
        *out++ = through_dtype(
            kernels::low_value(method, stored_code(method, code), params.low(row, group * params.group_columns)), dtype);
  return values.to(dtype);  // exact: each value came through the dtype
}

// Element i of a float32 / half / bfloat16 tensor, as a float.
float value_at(const at::Tensor& t, int64_t i) {
  switch (t.scalar_type()) {
    case at::kHalf:
      return static_cast<float>(t.data_ptr<c10::Half>()[i]);
    case at::kBFloat16:
      return static_cast<float>(t.data_ptr<c10::BFloat16>()[i]);
    default:
      return t.data_ptr<float>()[i];
  }
}

// high_scale / high_zero from high_range, as the quantizer computed them.
void derive_high_grid(PackedLinear& p, at::ScalarType zero_dtype) {
  const float maxq = static_cast<float>((1 << p.high_bit) - 1);
  at::Tensor scale = at::empty({p.rows}, at::kFloat), zero = at::empty({p.rows}, at::kFloat);
  for (int64_t row = 0; row < p.rows; ++row) {
    const float low = value_at(p.high_range, 2 * row), high = value_at(p.high_range, 2 * row + 1);
    PBLLM_CHECK(std::isfinite(low) && std::isfinite(high) && low < high, p.name, ": high_range of row ", row, " is [",
                low, ", ", high, "], not a range");
    const float s = grid_scale(low, high, maxq), z = grid_zero(low, s);
    PBLLM_CHECK(z >= 0 && z <= maxq, p.name, ": high_range of row ", row, " gives the zero point ", z, ", outside 0..",
                maxq);
    scale.data_ptr<float>()[row] = s;
    zero.data_ptr<float>()[row] = z;
  }
  p.high_scale = scale;
  p.high_zero = zero.to(zero_dtype);
}

}  // namespace

std::map<std::string, at::Tensor> PackedLinear::tensors() const {
  std::map<std::string, at::Tensor> all = {
      {"mask", mask},           {"mask_index", mask_index}, {"low_codes", low_codes},   {"high_codes", high_codes},
      {"high_range", high_range}, {"high_offset", high_offset}, {"low_scale", low_scale}, {"low_zero", low_zero},
      {"low_values", low_values},
      {"zero_signs", zero_signs}, {"zero_sign_values", zero_sign_values}};
  if (!high_range.defined()) all.insert({{"high_scale", high_scale}, {"high_zero", high_zero}});  // else derived
  for (auto it = all.begin(); it != all.end();) it = it->second.defined() ? std::next(it) : all.erase(it);
  return all;
}

int64_t PackedLinear::stored_bytes() const {
  int64_t bytes = 0;
  for (const auto& [suffix, tensor] : tensors()) bytes += static_cast<int64_t>(tensor.nbytes());
  return bytes;
}

MaskView PackedLinear::mask_view() const {
  return {mask.data_ptr<uint8_t>(), static_cast<uint64_t>(mask.numel()), mask_index.data_ptr<int64_t>(), rows, columns,
          rice_k, &name};
}

PackedLinear encode_linear(const QuantizedLinear& in, const std::string& name) {
  const at::Tensor W = cpu_float(in.weight), salient = in.salient.to(at::kCPU, at::kBool).contiguous();
  PBLLM_CHECK(W.dim() == 2 && salient.sizes() == W.sizes(), name, ": weight ", W.sizes(), " and mask ",
              salient.sizes(), " differ");
  PBLLM_CHECK(in.high_bit >= 1 && in.high_bit <= 16, name, ": high_bit ", in.high_bit, " is outside 1..16");
  const LowBitMethodTraits& traits = low_bit_method_traits(in.method);
  PackedLinear out;
  out.name = name;
  out.rows = W.size(0);
  out.columns = W.size(1);
  out.group_columns = in.groupsize > 0 ? std::min(in.groupsize, out.columns) : out.columns;
  out.method = in.method;
  out.high_bit = in.high_bit;
  out.high_grid = in.high_grid;
  out.dtype = in.dtype;
  out.high_scale = cpu_float(in.high_scale);
  const at::Tensor high_zero = cpu_float(in.high_zero);
  // The quantizer's own parameters find the codes; what is stored follows the method's traits.
  auto optional_float = [](const at::Tensor& t) { return t.defined() ? cpu_float(t) : at::Tensor(); };
  const at::Tensor low_mean = optional_float(in.low_mean), low_scale = optional_float(in.low_scale),
                   low_zero = optional_float(in.low_zero);
  if (traits.has_scale) out.low_scale = low_scale;
  if (traits.has_zero) out.low_zero = low_zero;
  auto pointer = [](const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; };
  const Parameters params{out.high_scale.data_ptr<float>(), high_zero.data_ptr<float>(), pointer(low_mean),
                          pointer(low_scale), pointer(low_zero), out.rows, out.group_columns,
                          static_cast<float>((1 << in.high_bit) - 1), low_maxq(in.method)};

  std::vector<uint16_t> low_codes, high_codes;
  std::vector<float> raw_values, zero_sign_values;
  std::vector<int64_t> zero_signs;
  const float* w = W.data_ptr<float>();
  const bool* s = salient.data_ptr<bool>();
  for (int64_t row = 0; row < out.rows; ++row) {
    for (int64_t column = 0; column < out.columns; ++column) {
      const int64_t entry = row * out.columns + column;
      const float q = w[entry];
      auto where = [&] { return str_cat(name, ": weight [", row, ", ", column, "] = ", q); };
      if (s[entry]) {
        const int code = grid_code_of(in.high_grid, q, params.high_scale[row], params.high_zero[row], params.high_maxq);
        PBLLM_CHECK(code >= 0, where(), " is salient but not on its row's ", in.high_bit, "-bit grid");
        high_codes.push_back(static_cast<uint16_t>(code));
        continue;
      }
      switch (traits.storage) {
        case LowBitStorage::raw_values:
          raw_values.push_back(q);
          break;
        case LowBitStorage::nothing:
          PBLLM_CHECK(same_bits(q, kernels::low_value(in.method, 0.0f, {})), where(), " should be 0 (", traits.name, ")");
          break;
        case LowBitStorage::codes: {
          float code = 0;
          PBLLM_CHECK(low_code_of(in.method, q, params.low(row, column), &code), where(), " is not a ", traits.name,
                      " value of its row");
          if (in.method == LowBitMethod::xnor) {
            if (code == 0) {  // the mean itself: stored as -1, listed here with its value
              zero_signs.push_back(entry);
              zero_sign_values.push_back(through_dtype(q, in.dtype));
            }
            code = code > 0 ? 1.0f : 0.0f;
          }
          low_codes.push_back(static_cast<uint16_t>(code));
          break;
        }
      }
    }
  }
  const EncodedMask mask = encode_mask(salient);
  out.rice_k = mask.rice_k;
  out.salient = mask.salient;
  out.mask = bytes_tensor(mask.stream);
  out.mask_index = at::empty({static_cast<int64_t>(mask.index.size() / 2), 2}, at::kLong);
  std::memcpy(out.mask_index.data_ptr<int64_t>(), mask.index.data(), mask.index.size() * sizeof(int64_t));
  out.high_codes = bytes_tensor(pack_codes(high_codes, in.high_bit));
  if (in.high_grid == HighGrid::affine) {
    out.high_offset = high_zero;
  } else {
    out.high_zero = in.high_bit <= 8 ? high_zero.to(at::kByte) : high_zero.to(at::kInt);
    out.high_range = high_range_of(out.high_scale, high_zero, params.high_maxq, in.dtype);
    if (out.high_range.defined()) out.high_scale = out.high_zero = at::Tensor();  // derived from it by the check
  }
  if (traits.code_values) out.low_values = code_values(params, out.groups(), traits.levels, in.method, in.dtype);
  if (traits.storage == LowBitStorage::codes) out.low_codes = bytes_tensor(pack_codes(low_codes, traits.code_bits));
  if (traits.storage == LowBitStorage::raw_values)
    out.low_codes = at::from_blob(raw_values.data(), {static_cast<int64_t>(raw_values.size())}, at::kFloat)
                        .to(in.dtype, /*non_blocking=*/false, /*copy=*/true);
  if (in.method == LowBitMethod::xnor) {
    const int64_t n = static_cast<int64_t>(zero_signs.size());
    out.zero_signs = at::from_blob(zero_signs.data(), {n}, at::kLong).clone();
    out.zero_sign_values = at::from_blob(zero_sign_values.data(), {n}, at::kFloat).to(in.dtype, false, true);
  }
  check_packed_linear(out);
  return out;
}

namespace {

void require_tensor(const std::string& name, const at::Tensor& t, const char* suffix, at::ScalarType dtype,
                    const std::vector<int64_t>& shape) {
  PBLLM_CHECK(t.defined(), name, ": tensor '", suffix, "' is missing");
  PBLLM_CHECK(t.scalar_type() == dtype && t.sizes() == at::IntArrayRef(shape) && t.is_contiguous(), name, ": tensor '",
              suffix, "' is ", at::toString(t.scalar_type()), " ", t.sizes(), ", expected ", at::toString(dtype), " ",
              at::IntArrayRef(shape));
}

// The high-bit grid's tensors: high_scale with high_zero (or high_range, from
// which they are derived) for a zero_point grid, high_scale with high_offset
// for an affine one.
void check_high_grid(PackedLinear& p) {
  const std::string& name = p.name;
  if (p.high_grid == HighGrid::affine) {
    PBLLM_CHECK(!p.high_zero.defined() && !p.high_range.defined(), name,
                ": an affine high-bit grid has no 'high_zero' or 'high_range' (its offsets are 'high_offset')");
    require_tensor(name, p.high_scale, "high_scale", at::kFloat, {p.rows});
    require_tensor(name, p.high_offset, "high_offset", at::kFloat, {p.rows});
    return;
  }
  PBLLM_CHECK(!p.high_offset.defined(), name, ": tensor 'high_offset' belongs to an affine high-bit grid, and this "
                                              "Linear's is a zero_point one");
  const at::ScalarType zero_dtype = p.high_bit <= 8 ? at::kByte : at::kInt;
  if (p.high_range.defined()) {
    PBLLM_CHECK(!p.high_scale.defined() && !p.high_zero.defined(), name,
                ": stores both 'high_range' and 'high_scale' / 'high_zero' (one grid per row)");
    PBLLM_CHECK(p.dtype == at::kHalf || p.dtype == at::kBFloat16, name, ": tensor 'high_range' in a ",
                at::toString(p.dtype), " Linear (only 16-bit ones store it)");
    require_tensor(name, p.high_range, "high_range", p.dtype, {p.rows, 2});
    derive_high_grid(p, zero_dtype);
  }
  require_tensor(name, p.high_scale, "high_scale", at::kFloat, {p.rows});
  require_tensor(name, p.high_zero, "high_zero", zero_dtype, {p.rows});
  const at::Tensor high_zero = p.high_zero.to(at::kLong);
  PBLLM_CHECK(high_zero.max().item<int64_t>() < (int64_t{1} << p.high_bit) && high_zero.min().item<int64_t>() >= 0,
              name, ": a high-bit zero point is outside 0..", (1 << p.high_bit) - 1);
}

}  // namespace

const char* high_grid_name(HighGrid grid) { return grid == HighGrid::affine ? "affine" : "zero_point"; }

HighGrid high_grid_from_name(const std::string& name, const std::string& where) {
  for (const HighGrid grid : {HighGrid::zero_point, HighGrid::affine})
    if (name == high_grid_name(grid)) return grid;
  throw Error(str_cat(where, ": high-bit grid \"", name, "\" is not zero_point or affine"));
}

at::Tensor high_grid_parameter(const PackedLinear& p) {
  return (p.high_grid == HighGrid::affine ? p.high_offset : p.high_zero).to(at::kFloat).contiguous();
}

void check_packed_linear(PackedLinear& p) {
  const std::string& name = p.name;
  const LowBitMethodTraits& traits = low_bit_method_traits(p.method);
  auto require = [&](const at::Tensor& t, const char* suffix, at::ScalarType dtype, std::vector<int64_t> shape) {
    require_tensor(name, t, suffix, dtype, shape);
  };
  PBLLM_CHECK(p.rows > 0 && p.columns > 0 && p.group_columns > 0 && p.group_columns <= p.columns, name, ": shape [",
              p.rows, ", ", p.columns, "] with ", p.group_columns, " columns per group is not valid");
  int64_t weights = 0;
  PBLLM_CHECK(!__builtin_mul_overflow(p.rows, p.columns, &weights) && weights <= (int64_t{1} << 48), name, ": shape [",
              p.rows, ", ", p.columns, "] is too large for a Linear");
  PBLLM_CHECK(p.high_bit >= 1 && p.high_bit <= 16, name, ": high_bit ", p.high_bit, " is outside 1..16");
  PBLLM_CHECK(p.salient >= 0 && p.salient <= p.weights(), name, ": ", p.salient, " salient weights of ", p.weights());
  require(p.mask, "mask", at::kByte, {p.mask.defined() ? p.mask.numel() : 0});
  const int64_t blocks = (p.rows + kMaskRowsPerBlock - 1) / kMaskRowsPerBlock;
  require(p.mask_index, "mask_index", at::kLong, {blocks + 1, 2});
  check_mask_index(p.mask_view(), p.salient);
  const int64_t low_count = p.weights() - p.salient;
  require(p.high_codes, "high_codes", at::kByte, {static_cast<int64_t>(packed_code_bytes(p.salient, p.high_bit))});
  check_high_grid(p);
  switch (traits.storage) {
    case LowBitStorage::codes:
      require(p.low_codes, "low_codes", at::kByte, {static_cast<int64_t>(packed_code_bytes(low_count, traits.code_bits))});
      break;
    case LowBitStorage::raw_values:
      require(p.low_codes, "low_codes", p.dtype, {low_count});
      break;
    case LowBitStorage::nothing:
      PBLLM_CHECK(!p.low_codes.defined(), name, ": ", traits.name, " stores no low-bit codes, but the file has some");
      break;
  }
  const bool xnor = p.method == LowBitMethod::xnor;
  for (const auto& [suffix, tensor] : p.tensors()) {
    const bool used = (suffix != "low_scale" || traits.has_scale) && (suffix != "low_zero" || traits.has_zero) &&
                      (suffix != "low_values" || traits.code_values) &&
                      ((suffix != "zero_signs" && suffix != "zero_sign_values") || xnor);
    PBLLM_CHECK(used, name, ": tensor '", suffix, "' is not part of a ", traits.name, " Linear");
  }
  const std::vector<int64_t> group_rows = {p.groups(), p.rows};
  if (traits.has_scale) require(p.low_scale, "low_scale", at::kFloat, group_rows);
  if (traits.has_zero) require(p.low_zero, "low_zero", at::kFloat, group_rows);
  if (traits.code_values) require(p.low_values, "low_values", p.dtype, {p.groups(), p.rows, traits.levels});
  for (const at::Tensor* t : {&p.high_scale, &p.high_offset, &p.low_scale, &p.low_zero, &p.low_values,
                              &p.zero_sign_values})
    PBLLM_CHECK(!t->defined() || t->isfinite().all().item<bool>(), name, ": a quantizer parameter is NaN or Inf");
  // What the quantizers can produce: a grid's scale from a range that holds
  // 0 and is widened when empty (> 0), sign's alpha a mean of relu (>= 0), a
  // zero point rounded.
  PBLLM_CHECK((p.high_scale > 0).all().item<bool>(), name, ": a high-bit scale is not positive");
  if (traits.has_scale) {
    const bool grid = traits.has_zero;
    PBLLM_CHECK((grid ? p.low_scale > 0 : p.low_scale >= 0).all().item<bool>(), name, ": a ", traits.name,
                " scale is ", grid ? "not positive" : "negative");
  }
  if (traits.has_zero)
    PBLLM_CHECK(at::equal(p.low_zero, p.low_zero.round()), name, ": a ", traits.name, " zero point is not an integer");
  if (p.method == LowBitMethod::xnor) {
    PBLLM_CHECK(p.zero_signs.defined() && p.zero_signs.dim() == 1 && p.zero_signs.scalar_type() == at::kLong, name,
                ": tensor 'zero_signs' is missing or not int64 [n]");
    PBLLM_CHECK(p.zero_signs.numel() <= low_count, name, ": zero_signs lists ", p.zero_signs.numel(),
                " weights, more than the ", low_count, " non-salient ones");
    require(p.zero_sign_values, "zero_sign_values", p.dtype, {p.zero_signs.numel()});
    const int64_t* z = p.zero_signs.data_ptr<int64_t>();
    for (int64_t i = 0; i < p.zero_signs.numel(); ++i)
      PBLLM_CHECK(z[i] >= 0 && z[i] < p.weights() && (i == 0 || z[i] > z[i - 1]), name,
                  ": zero_signs is not an increasing list of weight positions");
  }
  // Every block decodes to exactly its indexed bits (a corrupt stream rarely
  // does): a one-time walk at load, ~3 ns per salient weight, so inspect and
  // eval refuse alike. The same walk checks that no xnor weight at its mean
  // is a salient one.
  const int64_t* z = xnor ? p.zero_signs.data_ptr<int64_t>() : nullptr;
  const int64_t n = xnor ? p.zero_signs.numel() : 0;
  std::vector<int64_t> positions;
  for (int64_t block = 0, i = 0; block < blocks; ++block) {
    p.mask_view().block_positions(block, positions);
    const int64_t first_entry = block * kMaskRowsPerBlock * p.columns;
    for (; i < n && z[i] < first_entry + kMaskRowsPerBlock * p.columns; ++i)
      PBLLM_CHECK(!std::binary_search(positions.begin(), positions.end(), z[i] - first_entry), name,
                  ": zero_signs lists weight ", z[i], ", which the mask says is salient");
  }
}


float low_code_value(const PackedLinear& p, int64_t group, int64_t row, uint32_t code) {
  if (p.low_values.defined())
    return value_at(p.low_values, (group * p.rows + row) * low_bit_method_traits(p.method).levels + code);
  const at::Tensor* tensors[] = {&p.low_scale, &p.low_zero};
  float values[2] = {0, 0};
  for (int i = 0; i < 2; ++i)
    if (tensors[i]->defined()) values[i] = tensors[i]->data_ptr<float>()[group * p.rows + row];
  const LowBitRow r{0.0f, values[0], values[1], low_maxq(p.method)};
  return through_dtype(kernels::low_value(p.method, stored_code(p.method, code), r), p.dtype);
}

float zero_sign_value(const PackedLinear& p, int64_t i) { return value_at(p.zero_sign_values, i); }

uint16_t bits_of_value(float value, at::ScalarType dtype) {
  return dtype == at::kHalf ? c10::Half(value).x : c10::BFloat16(value).x;
}

float high_code_value(HighGrid grid, float scale, float zero_or_offset, uint32_t code, at::ScalarType dtype) {
  return through_dtype(high_grid_value(grid, static_cast<float>(code), scale, zero_or_offset), dtype);
}

CodeCursor low_code_cursor(const PackedLinear& p, int64_t index) {
  const LowBitMethodTraits& traits = low_bit_method_traits(p.method);
  if (traits.storage != LowBitStorage::codes) return CodeCursor(nullptr, 0, 0, 1);
  return CodeCursor(p.low_codes.data_ptr<uint8_t>(), p.low_codes.numel(), index, traits.code_bits);
}

CodeCursor high_code_cursor(const PackedLinear& p, int64_t index) {
  return CodeCursor(p.high_codes.data_ptr<uint8_t>(), p.high_codes.numel(), index, p.high_bit);
}

namespace {

// Decodes row blocks into out (the whole weight, row-major). Per row, the
// value of every low code of every group is computed once (with the
// quantizer's own value function, so the table holds exactly its floats) and
// the codes index that table.
class BlockDecoder {
 public:
  BlockDecoder(const PackedLinear& p, const at::Tensor& raw_values)
      : p_(p),
        traits_(low_bit_method_traits(p.method)),
        high_zero_tensor_(high_grid_parameter(p)),
        high_scale_(p.high_scale.data_ptr<float>()),
        high_zero_(high_zero_tensor_.data_ptr<float>()),
        raw_(raw_values.defined() ? raw_values.data_ptr<float>() : nullptr),
        levels_(std::max(traits_.levels, 1)) {}

  void decode(int64_t block, float* out, std::vector<int64_t>& positions, std::vector<float>& table) const {
    const int64_t first_entry = block * kMaskRowsPerBlock * p_.columns;
    const int64_t salient_before = p_.mask_index.data_ptr<int64_t>()[2 * block + 1];
    int64_t low_index = first_entry - salient_before;
    CodeCursor low = low_code_cursor(p_, low_index), high = high_code_cursor(p_, salient_before);
    int64_t table_row = -1;
    walk_block(
        p_, block, positions,
        [&](int64_t row, int64_t begin, int64_t end) {
          if (row != table_row) row_table(row, table), table_row = row;
          fill_run(out + row * p_.columns, begin, end, low, low_index, table);
          low_index += end - begin;
        },
        [&](int64_t row, int64_t column) {
          out[row * p_.columns + column] =
              high_code_value(p_.high_grid, high_scale_[row], high_zero_[row], high.next(), p_.dtype);
        });
    if (p_.method != LowBitMethod::xnor) return;
    const int64_t end_entry = std::min(p_.weights(), first_entry + kMaskRowsPerBlock * p_.columns);
    const int64_t* begin = p_.zero_signs.data_ptr<int64_t>();
    const int64_t* stop = begin + p_.zero_signs.numel();
    for (const int64_t* z = std::lower_bound(begin, stop, first_entry); z != stop && *z < end_entry; ++z)
      out[*z] = zero_sign_value(p_, z - begin);
  }

 private:
  // table[group * levels + code] = the value of stored code `code` in (group, row).
  void row_table(int64_t row, std::vector<float>& table) const {
    table.resize(p_.groups() * levels_);
    for (int64_t group = 0; group < p_.groups(); ++group)
      for (int code = 0; code < levels_; ++code) table[group * levels_ + code] = low_code_value(p_, group, row, code);
  }

  // Columns [from, to) of one row: all non-salient.
  void fill_run(float* out_row, int64_t from, int64_t to, CodeCursor& low, int64_t low_index,
                const std::vector<float>& table) const {
    if (traits_.storage == LowBitStorage::raw_values) {
      for (int64_t c = from; c < to; ++c) out_row[c] = raw_[low_index + c - from];
      return;
    }
    if (traits_.storage == LowBitStorage::nothing) {
      for (int64_t c = from; c < to; ++c) out_row[c] = table[0];
      return;
    }
    for (int64_t c = from; c < to;) {
      const int64_t group = c / p_.group_columns, end = std::min(to, (group + 1) * p_.group_columns);
      const float* values = table.data() + group * levels_;
      for (; c < end; ++c) out_row[c] = values[low.next()];
    }
  }

  const PackedLinear& p_;
  const LowBitMethodTraits& traits_;
  at::Tensor high_zero_tensor_;
  const float *high_scale_, *high_zero_;
  const float* raw_;
  int levels_;
};

}  // namespace

at::Tensor decode_linear(const PackedLinear& packed) {
  const at::Tensor raw = low_bit_method_traits(packed.method).storage == LowBitStorage::raw_values
                             ? packed.low_codes.to(at::kFloat).contiguous() : at::Tensor();
  const BlockDecoder decoder(packed, raw);
  at::Tensor out = at::empty({packed.rows, packed.columns}, at::kFloat);
  float* data = out.data_ptr<float>();
  const int64_t blocks = (packed.rows + kMaskRowsPerBlock - 1) / kMaskRowsPerBlock;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> positions;
    std::vector<float> table;
    for (int64_t block = begin; block < end; ++block) decoder.decode(block, data, positions, table);
  });
  return out;
}

}  // namespace pbllm::pack
