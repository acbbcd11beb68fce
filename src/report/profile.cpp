#include "pbllm/report/profile.h"

#include <chrono>
#include <cstdio>
#include <vector>

namespace pbllm::report {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Per thread, for each open scope: the seconds of the scopes nested in it
// (taken off its own time when it closes).
thread_local std::vector<double> nested_seconds;

std::string seconds_text(double seconds) {
  char text[32];
  if (seconds < 0.1) std::snprintf(text, sizeof text, "%.1f ms", seconds * 1e3);
  else std::snprintf(text, sizeof text, seconds < 10 ? "%.2f s" : "%.1f s", seconds);
  return text;
}

}  // namespace

const char* phase_name(Phase phase) {
  static constexpr std::array<const char*, kPhaseCount> kNames = {
      "load", "data", "forward", "hessian", "factorisation", "mask", "column_loop", "trailing_gemms", "save",
      "evaluation"};
  return kNames[static_cast<size_t>(phase)];
}

Profile::Scope::Scope(Profile& profile, Phase phase, double flops) : profile_(profile), phase_(phase), flops_(flops) {
  if (profile_.synchronize_) profile_.synchronize_();
  start_ = now_seconds();
  nested_seconds.push_back(0);
}

Profile::Scope::~Scope() {
  if (profile_.synchronize_) profile_.synchronize_();
  const double elapsed = now_seconds() - start_;
  const double inner = nested_seconds.back();
  nested_seconds.pop_back();
  if (!nested_seconds.empty()) nested_seconds.back() += elapsed;
  profile_.add(phase_, elapsed - inner, flops_);
}

void Profile::add(Phase phase, double seconds, double flops) {
  const std::lock_guard<std::mutex> lock(mutex_);
  seconds_[static_cast<size_t>(phase)] += seconds;
  flops_[static_cast<size_t>(phase)] += flops;
}

void Profile::set_gemm_rate(double flops_per_second) {
  const std::lock_guard<std::mutex> lock(mutex_);
  gemm_rate_ = flops_per_second;
}

void Profile::set_synchronizer(std::function<void()> synchronize) { synchronize_ = std::move(synchronize); }

double Profile::seconds(Phase phase) const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return seconds_[static_cast<size_t>(phase)];
}

double Profile::flops(Phase phase) const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return flops_[static_cast<size_t>(phase)];
}

void Profile::reset() {
  const std::lock_guard<std::mutex> lock(mutex_);
  seconds_.fill(0);
  flops_.fill(0);
}

nlohmann::json Profile::to_json(double wall_seconds) const {
  const std::lock_guard<std::mutex> lock(mutex_);
  nlohmann::json phases = nlohmann::json::object();
  double covered = 0;
  for (int i = 0; i < kPhaseCount; ++i) {
    if (seconds_[i] == 0 && flops_[i] == 0) continue;
    covered += seconds_[i];
    nlohmann::json phase = {{"seconds", seconds_[i]}, {"flops", flops_[i]}};
    if (flops_[i] > 0 && gemm_rate_ > 0) phase["floor_seconds"] = flops_[i] / gemm_rate_;
    phases[phase_name(static_cast<Phase>(i))] = phase;
  }
  return {{"gemm_flops_per_second", gemm_rate_}, {"wall_seconds", wall_seconds},
          {"other_seconds", wall_seconds - covered}, {"phases", phases}};
}

std::string Profile::line(double wall_seconds) const {
  const std::lock_guard<std::mutex> lock(mutex_);
  std::string text = "profile ";
  double covered = 0;
  bool first = true;
  for (int i = 0; i < kPhaseCount; ++i) {
    if (seconds_[i] == 0 && flops_[i] == 0) continue;
    text += std::string(first ? " " : " | ") + phase_name(static_cast<Phase>(i)) + " " +
            seconds_text(seconds_[i]);
    covered += seconds_[i];
    first = false;
    if (flops_[i] > 0 && gemm_rate_ > 0) text += " (floor " + seconds_text(flops_[i] / gemm_rate_) + ")";
  }
  return text + " | other " + seconds_text(wall_seconds - covered) + " of " + seconds_text(wall_seconds) + "\n";
}

Profile& run_profile() {
  static Profile profile;
  return profile;
}

}  // namespace pbllm::report
