// The run profile: nested phases are taken off the phase around them (of the
// same profile only), floors are FLOPs at the phase's GEMM rate, "other" is
// what no phase covered, and a failing GPU wait cannot end the process.
#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <thread>

#include "pbllm/report/profile.h"

namespace pbllm::report {
namespace {

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

TEST(Profile, NestedPhasesAreTakenOffTheOuterOne) {
  Profile profile, other;
  {
    const Profile::Scope forward(profile, Phase::forward, 3e9);
    sleep_ms(20);
    {
      const Profile::Scope hessian(profile, Phase::hessian, 1e9);
      const Profile::Scope elsewhere(other, Phase::mask);  // another profile's scope takes nothing off
      sleep_ms(300);
    }
  }
  EXPECT_GE(profile.seconds(Phase::hessian), 0.3);
  EXPECT_GE(other.seconds(Phase::mask), 0.3);
  EXPECT_GE(profile.seconds(Phase::forward), 0.02);
  EXPECT_LT(profile.seconds(Phase::forward), 0.3);  // the Hessian's 300 ms are not counted twice
  EXPECT_EQ(profile.flops(Phase::forward), 3e9);
  EXPECT_EQ(profile.seconds(Phase::mask), 0);
}

TEST(Profile, FloorsUseTheirPhasesRate) {
  Profile profile;
  profile.set_gemm_rates(1e9, 4e9);  // float32, compute dtype
  { const Profile::Scope forward(profile, Phase::forward, 2e9); }
  { auto factorisation = Profile::Scope(profile, Phase::factorisation); factorisation.add_flops(3e9); }
  { const Profile::Scope mask(profile, Phase::mask); }
  const nlohmann::json json = profile.to_json(5.0);
  EXPECT_DOUBLE_EQ(json["phases"]["forward"]["floor_seconds"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(json["phases"]["factorisation"]["floor_seconds"].get<double>(), 3.0);
  EXPECT_FALSE(json["phases"]["mask"].contains("floor_seconds"));  // no FLOPs, no floor
  EXPECT_FALSE(json["phases"].contains("hessian"));                 // never ran
  double covered = 0;
  for (const Phase phase : {Phase::forward, Phase::factorisation, Phase::mask}) covered += profile.seconds(phase);
  EXPECT_DOUBLE_EQ(json["other_seconds"].get<double>(), 5.0 - covered);
  const std::string line = profile.line(5.0);
  EXPECT_NE(line.find("| factorisation "), std::string::npos) << line;
  EXPECT_NE(line.find("(floor 3.00 s)"), std::string::npos) << line;
  EXPECT_NE(line.find("(floor 0.50 s)"), std::string::npos) << line;
  EXPECT_NE(line.find("| other "), std::string::npos) << line;
  profile.reset();
  EXPECT_EQ(profile.seconds(Phase::forward), 0);
}

TEST(Profile, TheSynchronizerRunsAtEachEndAndAFailingOneDoesNotEndTheProcess) {
  Profile profile;
  int calls = 0;
  profile.set_synchronizer([&] { ++calls; });
  { const Profile::Scope column_loop(profile, Phase::column_loop); }
  EXPECT_EQ(calls, 2);
  bool fail = false;
  profile.set_synchronizer([&] {
    if (fail) throw std::runtime_error("an asynchronous GPU error");
  });
  {
    const Profile::Scope trailing(profile, Phase::trailing_gemms);
    fail = true;  // found by the wait at the scope's end: swallowed, the next wait reports it
  }
  EXPECT_THROW(Profile::Scope(profile, Phase::mask), std::runtime_error);
  fail = false;
  // A scope left by an exception is still counted, without waiting.
  try {
    const Profile::Scope save(profile, Phase::save);
    sleep_ms(5);
    throw std::runtime_error("disk full");
  } catch (const std::runtime_error&) {
  }
  EXPECT_GT(profile.seconds(Phase::save), 0);
}

}  // namespace
}  // namespace pbllm::report
