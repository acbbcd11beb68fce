#include "pbllm/report/profile.h"

#include <chrono>
#include <cstdio>
#include <exception>
#include <vector>

namespace pbllm::report {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The scopes open on this thread, innermost last, with their profiles: a
// closing scope's time is taken off the nearest open one of the same profile.
struct OpenScope {
  const Profile* profile;
  double* inner;
};
thread_local std::vector<OpenScope> open_scopes;

std::string seconds_text(double seconds) {
  char text[32];
  if (seconds < 1e-4) std::snprintf(text, sizeof text, "%.0f us", seconds * 1e6);
  else if (seconds < 0.1) std::snprintf(text, sizeof text, "%.1f ms", seconds * 1e3);
  else std::snprintf(text, sizeof text, seconds < 10 ? "%.2f s" : "%.1f s", seconds);
  return text;
}

bool uses_compute_rate(int phase) {
  return phase == static_cast<int>(Phase::forward) || phase == static_cast<int>(Phase::hessian);
}

}  // namespace

const char* phase_name(Phase phase) {
  static constexpr std::array<const char*, kPhaseCount> kNames = {
      "load", "data", "forward", "hessian", "factorisation", "mask", "column_loop", "trailing_gemms", "save",
      "evaluation"};
  static_assert(kNames.back() != nullptr, "a name for every phase");
  return kNames[static_cast<size_t>(phase)];
}

Profile::Scope::Scope(Profile& profile, Phase phase, double flops)
    : profile_(profile), phase_(phase), flops_(flops), exceptions_(std::uncaught_exceptions()) {
  profile_.synchronize();
  start_ = now_seconds();
  open_scopes.push_back({&profile_, &inner_});
}

Profile::Scope::~Scope() {
  // A GPU error found by this wait (or one while unwinding) must not end the
  // process here: the next synchronising call reports it as an error.
  if (std::uncaught_exceptions() == exceptions_) {
    try {
      profile_.synchronize();
    } catch (...) {
    }
  }
  const double elapsed = now_seconds() - start_;
  open_scopes.pop_back();
  for (auto outer = open_scopes.rbegin(); outer != open_scopes.rend(); ++outer)
    if (outer->profile == &profile_) {
      *outer->inner += elapsed;
      break;
    }
  profile_.add(phase_, elapsed - inner_, flops_);
}

void Profile::add(Phase phase, double seconds, double flops) {
  const std::lock_guard<std::mutex> lock(mutex_);
  seconds_[static_cast<size_t>(phase)] += seconds;
  flops_[static_cast<size_t>(phase)] += flops;
}

void Profile::synchronize() const {
  std::function<void()> synchronize;
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    synchronize = synchronize_;
  }
  if (synchronize) synchronize();
}

void Profile::set_gemm_rates(double float32, double compute) {
  const std::lock_guard<std::mutex> lock(mutex_);
  float32_rate_ = float32;
  compute_rate_ = compute;
}

void Profile::set_synchronizer(std::function<void()> synchronize) {
  const std::lock_guard<std::mutex> lock(mutex_);
  synchronize_ = std::move(synchronize);
}

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

double Profile::floor_seconds(int phase) const {
  const double rate = uses_compute_rate(phase) ? compute_rate_ : float32_rate_;
  return rate > 0 ? flops_[phase] / rate : 0;
}

nlohmann::json Profile::to_json(double wall_seconds) const {
  const std::lock_guard<std::mutex> lock(mutex_);
  nlohmann::json phases = nlohmann::json::object();
  double covered = 0;
  for (int i = 0; i < kPhaseCount; ++i) {
    if (seconds_[i] == 0 && flops_[i] == 0) continue;
    covered += seconds_[i];
    nlohmann::json phase = {{"seconds", seconds_[i]}, {"flops", flops_[i]}};
    if (floor_seconds(i) > 0) phase["floor_seconds"] = floor_seconds(i);
    phases[phase_name(static_cast<Phase>(i))] = phase;
  }
  return {{"gemm_flops_per_second", float32_rate_}, {"compute_gemm_flops_per_second", compute_rate_},
          {"wall_seconds", wall_seconds}, {"other_seconds", wall_seconds - covered}, {"phases", phases}};
}

std::string Profile::line(double wall_seconds) const {
  const std::lock_guard<std::mutex> lock(mutex_);
  std::string text = "profile ";
  double covered = 0;
  bool first = true;
  for (int i = 0; i < kPhaseCount; ++i) {
    if (seconds_[i] == 0 && flops_[i] == 0) continue;
    text += std::string(first ? " " : " | ") + phase_name(static_cast<Phase>(i)) + " " + seconds_text(seconds_[i]);
    if (floor_seconds(i) > 0) text += " (floor " + seconds_text(floor_seconds(i)) + ")";
    covered += seconds_[i];
    first = false;
  }
  return text + " | other " + seconds_text(wall_seconds - covered) + " of " + seconds_text(wall_seconds) + "\n";
}

Profile& run_profile() {
  static Profile profile;
  return profile;
}

}  // namespace pbllm::report
