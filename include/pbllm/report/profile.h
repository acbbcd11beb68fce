// Where a run's time goes, phase by phase, beside each phase's floor: its
// FLOPs at a GEMM rate measured at start-up (the plan's), the time it would
// take if it ran at that rate. Phases nest: one timed inside another of the
// same profile (the Hessian updates inside the forward pass that feeds them)
// is taken off it, so no second counts twice and the phases add up to at most
// the wall time; what no phase covers is reported as "other".
#pragma once

#include <array>
#include <functional>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

namespace pbllm::report {

enum class Phase { load, data, forward, hessian, factorisation, mask, column_loop, trailing_gemms, save, evaluation };
constexpr int kPhaseCount = static_cast<int>(Phase::evaluation) + 1;
const char* phase_name(Phase phase);  // "forward", "column_loop", ...

class Profile {
 public:
  // Times its own lifetime as `phase`, doing `flops` of work (0: no floor).
  // Scopes are opened and closed on the thread that runs the phase, never
  // inside a parallel region.
  class Scope {
   public:
    Scope(Profile& profile, Phase phase, double flops = 0);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    // FLOPs known only once the work is done (a factorisation's retries).
    void add_flops(double flops) { flops_ += flops; }

   private:
    Profile& profile_;
    Phase phase_;
    double flops_;
    double start_;
    double inner_ = 0;  // seconds of the scopes of this profile nested in this one
    int exceptions_;    // in flight when opened: one more at the close means it is unwinding
  };

  // The floors' rates: `float32` for the GPTQ-PB work, `compute` for the
  // forward and the Hessians (the compute dtype's: fp16 on a GPU's tensor cores).
  void set_gemm_rates(double float32, double compute);
  // Called at each scope's start and end: a GPU's queued work is waited for,
  // so that it is counted in the phase that queued it (a few microseconds
  // each, and the GPU idles while the next launch is prepared).
  void set_synchronizer(std::function<void()> synchronize);
  double seconds(Phase phase) const;
  double flops(Phase phase) const;
  // {"gemm_flops_per_second", "compute_gemm_flops_per_second", "wall_seconds", "other_seconds",
  //  "phases": {name: {"seconds", "flops", "floor_seconds"}}} (the phases that ran).
  nlohmann::json to_json(double wall_seconds) const;
  // "profile  forward 39.1 s (floor 35.2 s) | hessian 8.0 s (floor 4.1 s) | mask 0.3 s | ... | other 1.2 s of 61.0 s"
  std::string line(double wall_seconds) const;
  void reset();

 private:
  void add(Phase phase, double seconds, double flops);
  void synchronize() const;
  double floor_seconds(int phase) const;  // 0 where there is no rate or no FLOPs
  mutable std::mutex mutex_;
  std::array<double, kPhaseCount> seconds_{}, flops_{};
  double float32_rate_ = 0, compute_rate_ = 0;
  std::function<void()> synchronize_;
};

// The process's profile (the tools report it; the library times into it).
Profile& run_profile();
// A scope of run_profile().
inline Profile::Scope timed(Phase phase, double flops = 0) { return Profile::Scope(run_profile(), phase, flops); }

}  // namespace pbllm::report
