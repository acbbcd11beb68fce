// One checking macro for the whole library, in the spirit of c10's TORCH_CHECK:
// the library never aborts; a failed check throws pbllm::Error with a message
// a user can act on (file, value, what to do), and the tools print it as one line.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace pbllm {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
inline void append_all(std::ostringstream&) {}
template <typename First, typename... Rest>
void append_all(std::ostringstream& out, const First& first, const Rest&... rest) {
  out << first;
  append_all(out, rest...);
}
}  // namespace detail

// Concatenates its arguments with operator<< into one string.
template <typename... Parts>
std::string str_cat(const Parts&... parts) {
  std::ostringstream out;
  detail::append_all(out, parts...);
  return out.str();
}

}  // namespace pbllm

// PBLLM_CHECK(cond, parts...): throws pbllm::Error(str_cat(parts...)) when cond is false.
#define PBLLM_CHECK(cond, ...)                                  \
  do {                                                          \
    if (!(cond)) throw ::pbllm::Error(::pbllm::str_cat(__VA_ARGS__)); \
  } while (0)
