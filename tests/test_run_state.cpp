// The state folder's pure parts: where it goes, what counts as a change, and
// a layer's round trip (reports, plain weights, packed Linears decoded back).
#include <gtest/gtest.h>

#include <ATen/ops/equal.h>

#include "pbllm/quant/run_state.h"
#include "random_layer.h"
#include "test_support.h"

namespace pbllm::quant {
namespace {

TEST(RunState, StateFolderSitsBesideTheOutput) {
  EXPECT_EQ(state_dir_beside("out"), "out.pbllm-state");
  EXPECT_EQ(state_dir_beside("out/"), "out.pbllm-state");
  EXPECT_EQ(state_dir_beside("a/./b/"), "a/b.pbllm-state");
  EXPECT_EQ(state_dir_beside("/x/y"), "/x/y.pbllm-state");
}

TEST(RunState, DifferencesNameEachChange) {
  const nlohmann::json kept = {{"pbllm_version", "0.1.0"},
                               {"arguments", {{"low_frac", 0.9}, {"dataset", "ptb"}, {"seed", 0}}},
                               {"files", {{"model's config.json", "aa"}}}};
  EXPECT_TRUE(manifest_differences(kept, kept).empty());
  nlohmann::json now = kept;
  now["arguments"]["low_frac"] = 0.8;
  now["arguments"].erase("seed");
  now["arguments"]["dataset"] = "c4";
  now["files"]["model's config.json"] = "bb";
  now["pbllm_version"] = "0.2.0";
  const std::vector<std::string> expected = {"dataset was \"ptb\", now \"c4\"", "--low_frac was 0.9, now 0.8",
                                             "--seed was 0, now (absent)", "model's config.json changed (sha256)",
                                             "it was written by pbllm 0.1.0, this is pbllm 0.2.0"};
  EXPECT_EQ(manifest_differences(kept, now), expected);
}

TEST(RunState, LayerRoundTripAndRefusals) {
  const testing::ScratchDir scratch;
  const auto dir = scratch.path() / "q.pbllm-state";
  const nlohmann::json manifest = {{"pbllm_version", "0.1.0"}, {"arguments", {{"low_frac", 0.9}}}};
  LayerState layer;
  LinearReport report;
  report.layer = 0;
  report.name = "mlp.up_proj";
  report.rows = 48;
  report.columns = 64;
  report.loss = 1.25;
  report.salient_fraction = 0.1;
  layer.reports = {report};
  const auto quantized = testing::random_quantized_linear(48, 64, 0.9, 7);
  layer.packed["l.0.up.weight"] = std::make_shared<const pack::PackedLinear>(pack::encode_linear(quantized, "up"));
  layer.weights = {{"l.0.up.weight", quantized.weight}, {"l.0.down.weight", at::ones({4, 4})}};
  {
    RunState state(dir, manifest, false);
    EXPECT_EQ(state.finished_layers(), 0);
    state.save_layer(layer);
    EXPECT_THROW(RunState(dir, manifest, false), StateError);  // locked by `state`
  }
  nlohmann::json other = manifest;
  other["arguments"]["low_frac"] = 0.8;
  try {
    RunState refused(dir, other, false);
    FAIL() << "a different run resumed";
  } catch (const StateError& error) {
    EXPECT_NE(std::string(error.what()).find("--low_frac was 0.9, now 0.8"), std::string::npos) << error.what();
  }
  RunState state(dir, manifest, false);
  ASSERT_EQ(state.finished_layers(), 1);
  const LayerState back = state.load_layer(0);
  ASSERT_EQ(back.reports.size(), 1u);
  EXPECT_EQ(back.reports[0].name, "mlp.up_proj");
  EXPECT_EQ(back.reports[0].loss, 1.25);
  ASSERT_EQ(back.weights.size(), 2u);
  EXPECT_EQ(back.weights[0].first, "l.0.down.weight");
  EXPECT_TRUE(at::equal(back.weights[0].second, at::ones({4, 4})));
  EXPECT_EQ(back.weights[1].first, "l.0.up.weight");  // decoded from its packed form
  EXPECT_TRUE(at::equal(back.weights[1].second, quantized.weight));
  EXPECT_EQ(back.packed.size(), 1u);
  state.remove();
  EXPECT_FALSE(std::filesystem::exists(dir));
}

}  // namespace
}  // namespace pbllm::quant
