// The run profile: nested phases are taken off the phase around them, floors
// are FLOPs at the GEMM rate, and "other" is what no phase covered.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "pbllm/report/profile.h"

namespace pbllm::report {
namespace {

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

TEST(Profile, NestedPhasesAreTakenOffTheOuterOne) {
  Profile profile;
  {
    const Profile::Scope forward(profile, Phase::forward, 3e9);
    sleep_ms(30);
    {
      const Profile::Scope hessian(profile, Phase::hessian, 1e9);
      sleep_ms(60);
    }
  }
  EXPECT_GE(profile.seconds(Phase::hessian), 0.06);
  EXPECT_GE(profile.seconds(Phase::forward), 0.03);
  EXPECT_LT(profile.seconds(Phase::forward), 0.06);  // the 60 ms of the Hessian are not counted twice
  EXPECT_EQ(profile.flops(Phase::forward), 3e9);
  EXPECT_EQ(profile.seconds(Phase::mask), 0);
}

TEST(Profile, JsonHasFloorsAndTheUncoveredRest) {
  Profile profile;
  profile.set_gemm_rate(1e9);
  { const Profile::Scope forward(profile, Phase::forward, 2e9); }
  { const Profile::Scope mask(profile, Phase::mask); }
  const nlohmann::json json = profile.to_json(5.0);
  EXPECT_DOUBLE_EQ(json["phases"]["forward"]["floor_seconds"].get<double>(), 2.0);
  EXPECT_FALSE(json["phases"]["mask"].contains("floor_seconds"));  // no FLOPs, no floor
  EXPECT_FALSE(json["phases"].contains("hessian"));                 // never ran
  const double covered = profile.seconds(Phase::forward) + profile.seconds(Phase::mask);
  EXPECT_DOUBLE_EQ(json["other_seconds"].get<double>(), 5.0 - covered);
  const std::string line = profile.line(5.0);
  EXPECT_NE(line.find("forward "), std::string::npos) << line;
  EXPECT_NE(line.find("(floor 2.00 s)"), std::string::npos) << line;
  EXPECT_NE(line.find("| other "), std::string::npos) << line;
  profile.reset();
  EXPECT_EQ(profile.seconds(Phase::forward), 0);
}

TEST(Profile, ASynchronizerRunsAtEachScopesStartAndEnd) {
  Profile profile;
  int calls = 0;
  profile.set_synchronizer([&] { ++calls; });
  { const Profile::Scope column_loop(profile, Phase::column_loop); }
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace pbllm::report
