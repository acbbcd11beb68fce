// The low-bit methods of GPTQ-PB, defined once (as ggml's type_traits define
// each quant type once): the CLI's choices, the quantizers and the kernels'
// dispatch, the packed format's code widths, the bit accounting and the tests
// all read this table. Torch-free and nvcc-safe: the kernels include it.
#pragma once

#include <stdint.h>

#include <string>
#include <vector>

namespace pbllm {

enum class LowBitMethod : int32_t { xnor = 0, sign = 1, no = 2, two_bit = 3, four_bit = 4, prune = 5 };

// What the packed format keeps of each non-salient weight.
enum class LowBitStorage : int32_t {
  codes,       // code_bits per weight
  raw_values,  // the value itself, in the checkpoint's dtype ("no" quantizes nothing)
  nothing,     // every value is 0 ("prune")
};

struct LowBitMethodTraits {
  LowBitMethod method;
  const char* name;     // as the reference's run.py spells it
  int levels;           // values one (group, row) can take; 0 = any value
  int code_bits;        // bits of one stored code: ceil(log2(levels)), 0 when nothing is coded
  LowBitStorage storage;
  bool code_values;     // the packed format stores, per (group, row), the value of each code in the checkpoint's dtype
  bool has_scale;       // else these float32 per (group, row) parameters the decoder needs
  bool has_zero;
  const char* rule;     // q(w), for the help text and the README
};

inline constexpr LowBitMethodTraits kLowBitMethods[] = {
    {LowBitMethod::xnor, "xnor", 2, 1, LowBitStorage::codes, true, false, false, "alpha*sign(w-mean)+mean"},
    {LowBitMethod::sign, "sign", 2, 1, LowBitStorage::codes, false, true, false, "alpha*[w>0]"},
    {LowBitMethod::no, "no", 0, 0, LowBitStorage::raw_values, false, false, false, "w (kept)"},
    // The reference's "2bit" has 4 levels and its "4bit" 8 (codes 0..3, 0..7).
    {LowBitMethod::two_bit, "2bit", 4, 2, LowBitStorage::codes, false, true, true, "scale*(code-zero), code 0..3"},
    {LowBitMethod::four_bit, "4bit", 8, 3, LowBitStorage::codes, false, true, true, "scale*(code-zero), code 0..7"},
    {LowBitMethod::prune, "prune", 1, 0, LowBitStorage::nothing, false, false, false, "0"},
};

inline constexpr const LowBitMethodTraits& low_bit_method_traits(LowBitMethod method) {
  return kLowBitMethods[static_cast<int32_t>(method)];
}

// "xnor", ... -> the method; an unknown name throws pbllm::Error listing the names.
LowBitMethod low_bit_method_from_name(const std::string& name);
std::vector<std::string> low_bit_method_names();

}  // namespace pbllm
