// Where a run's time goes, phase by phase, beside each phase's floor: its
// FLOPs at the GEMM rate measured at start-up (the plan's), the time it would
// take if it ran at that rate. Phases nest: one timed inside another (the
// Hessian updates inside the forward pass that feeds them) is subtracted from
// it, so the phases never count a second twice and add up to at most the wall
// time; what no phase covers is reported as "other".
#pragma once

#include <array>
#include <functional>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

namespace pbllm::report {

enum class Phase { load, data, forward, hessian, factorisation, mask, column_loop, trailing_gemms, save, evaluation };
constexpr int kPhaseCount = 10;
const char* phase_name(Phase phase);  // "forward", "column_loop", ...

class Profile {
 public:
  // Times its own lifetime as `phase`, doing `flops` of work (0: no floor).
  class Scope {
   public:
    Scope(Profile& profile, Phase phase, double flops = 0);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Profile& profile_;
    Phase phase_;
    double flops_;
    double start_;
  };

  void set_gemm_rate(double flops_per_second);
  // Called at each scope's start and end: a GPU's asynchronous work is waited
  // for, so that it is counted in the phase that queued it.
  void set_synchronizer(std::function<void()> synchronize);
  double seconds(Phase phase) const;
  double flops(Phase phase) const;
  // {"gemm_flops_per_second", "wall_seconds", "other_seconds",
  //  "phases": {name: {"seconds", "flops", "floor_seconds"}}} (phases that ran).
  nlohmann::json to_json(double wall_seconds) const;
  // "profile  forward 39.1 s (floor 35.2 s) | hessian 8.0 s (floor 4.1 s) | mask 0.3 s | ... | other 1.2 s of 61.0 s"
  std::string line(double wall_seconds) const;
  void reset();

 private:
  void add(Phase phase, double seconds, double flops);
  mutable std::mutex mutex_;
  std::array<double, kPhaseCount> seconds_{}, flops_{};
  double gemm_rate_ = 0;
  std::function<void()> synchronize_;
};

// The process's profile (the tools report it; the library times into it).
Profile& run_profile();

}  // namespace pbllm::report
