// Progress of long work on stderr: one line redrawn in place on a terminal
// (count, rate, time left), a log line every ~10% otherwise (files, CI).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace pbllm::report {

class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "");
  ~Progress();  // ends the terminal line
  // Marks `done` of `total` finished; `detail` is appended (e.g. a running value).
  void update(int64_t done, const std::string& detail = "");

 private:
  std::string label_, unit_;
  int64_t total_;
  int64_t last_logged_decile_ = -1;
  bool terminal_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace pbllm::report
