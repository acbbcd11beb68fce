#include "pbllm/core/low_bit_methods.h"

#include "pbllm/core/check.h"

namespace pbllm {

namespace {
// low_bit_method_traits indexes the table by the enum's value.
constexpr bool table_in_enum_order() {
  int32_t index = 0;
  for (const LowBitMethodTraits& traits : kLowBitMethods)
    if (static_cast<int32_t>(traits.method) != index++) return false;
  return index == 6;
}
static_assert(table_in_enum_order(), "kLowBitMethods: one row per LowBitMethod, in the enum's order");
}  // namespace

std::vector<std::string> low_bit_method_names() {
  std::vector<std::string> names;
  for (const LowBitMethodTraits& traits : kLowBitMethods) names.emplace_back(traits.name);
  return names;
}

LowBitMethod low_bit_method_from_name(const std::string& name) {
  std::string known;
  for (const LowBitMethodTraits& traits : kLowBitMethods) {
    if (name == traits.name) return traits.method;
    known += str_cat(known.empty() ? "" : ", ", traits.name);
  }
  throw Error(str_cat("unknown low-bit method '", name, "' (", known, ")"));
}

}  // namespace pbllm
