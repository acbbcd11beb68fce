// What the libFuzzer targets share: the input as a file (the readers take
// paths, as the tools do), and the rule that a reader may reject an input only
// with pbllm::Error, whose message names the file and the problem; any other
// exception escapes and libFuzzer reports it, as it reports a crash.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "pbllm/core/check.h"

namespace pbllm::fuzz {

// The input in a file of this process named `name` (under /dev/shm: no disk traffic).
inline std::filesystem::path input_file(const uint8_t* data, size_t size, const std::string& name) {
  static const std::filesystem::path dir = [] {
    std::filesystem::path made = std::filesystem::path("/dev/shm") / ("pbllm-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(made);
    return made;
  }();
  const std::filesystem::path path = dir / name;
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data),
                                                                static_cast<std::streamsize>(size));
  return path;
}

// Runs `read` on the input; pbllm::Error is a clean rejection.
template <typename Read>
int accept_or_reject(Read&& read) {
  try {
    read();
  } catch (const pbllm::Error&) {
  }
  return 0;
}

}  // namespace pbllm::fuzz
