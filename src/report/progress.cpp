#include "pbllm/report/progress.h"

#include <unistd.h>

#include <cstdio>

#include "pbllm/report/logging.h"

namespace pbllm::report {

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      terminal_(::isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() {
  if (drawn_) std::fputc('\n', stderr);
}

void Progress::update(int64_t done, const std::string& detail) {
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = seconds > 0 ? done / seconds : 0;
  const double left = rate > 0 ? (total_ - done) / rate : 0;
  char line[512];
  std::snprintf(line, sizeof line, "%s %lld/%lld %s(%.1f%%, %.2f/s, %.0f s left)%s%s", label_.c_str(),
                static_cast<long long>(done), static_cast<long long>(total_), unit_.empty() ? "" : (unit_ + " ").c_str(),
                total_ > 0 ? 100.0 * done / total_ : 100.0, rate, left, detail.empty() ? "" : " ", detail.c_str());
  if (terminal_) {
    std::fprintf(stderr, "\r\033[K%s", line);
    std::fflush(stderr);
    drawn_ = true;
    return;
  }
  const int64_t decile = total_ > 0 ? done * 10 / total_ : 10;
  if (decile > last_logged_decile_) {
    last_logged_decile_ = decile;
    log::info(line);
  }
}

}  // namespace pbllm::report
