// Paths and scratch folders shared by the test suites.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "pbllm/core/check.h"

namespace pbllm::testing {

// A file of the source tree (PBLLM_SOURCE_DIR is set by tests/CMakeLists.txt).
inline std::filesystem::path source_path(const std::string& relative) {
  return std::filesystem::path(PBLLM_SOURCE_DIR) / relative;
}

// A fresh, empty folder for one test, removed when it goes out of scope.
class ScratchDir {
 public:
  ScratchDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            (std::string("pbllm-") + info->test_suite_name() + "-" + info->name() + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Asserts that `statement` throws pbllm::Error whose message contains `needle`.
#define EXPECT_ERROR_CONTAINS(statement, needle)                                              \
  do {                                                                                        \
    try {                                                                                     \
      statement;                                                                              \
      ADD_FAILURE() << "expected pbllm::Error containing \"" << (needle) << "\"";             \
    } catch (const ::pbllm::Error& error) {                                                   \
      EXPECT_NE(std::string(error.what()).find(needle), std::string::npos) << error.what();   \
    }                                                                                         \
  } while (0)

}  // namespace pbllm::testing
