// Compute copies (model/decoder.h, Residency): an fp16 checkpoint on the CPU
// computes through float32 copies, exactly what an fp16 model on a GPU does
// through fp16 copies, so the bookkeeping the GPU path relies on (what is
// kept, what set_weight refreshes, what hold/release leave behind) is checked
// here without a GPU.
#include <ATen/TensorOperators.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/tensor.h>
#include <c10/core/GradMode.h>

#include <filesystem>

#include "pbllm/core/allocator.h"
#include "pbllm/data/datasets.h"
#include "pbllm/io/checkpoint.h"
#include "pbllm/io/safetensors.h"
#include "pbllm/model/decoder.h"
#include "pbllm/quant/layer_driver.h"
#include "pbllm/tokenizer/tokenizer.h"
#include "test_support.h"

namespace pbllm {
namespace {

using pbllm::testing::source_path;
namespace fs = std::filesystem;

const std::string kQ0 = "model.layers.0.self_attn.q_proj.weight";

// stories260K with every tensor stored as fp16.
fs::path write_fp16_stories(const fs::path& dir) {
  const auto source = io::Checkpoint::open(source_path("data/stories260K").string());
  io::NamedTensors tensors;
  for (const std::string& name : source.tensor_names()) tensors.emplace_back(name, source.tensor(name).to(at::kHalf));
  io::save_safetensors((dir / "model.safetensors").string(), tensors);
  for (const char* file : {"config.json", "tokenizer.model", "tokenizer_config.json"})
    fs::copy_file(source_path("data/stories260K") / file, dir / file);
  return dir;
}

class ComputeCopies : public ::testing::Test {
 protected:
  ComputeCopies() : checkpoint_(io::Checkpoint::open(write_fp16_stories(scratch_.path()).string())) {}
  std::unique_ptr<model::DecoderModel> load() const { return model::DecoderModel::load(checkpoint_, at::kCPU); }
  int64_t layer_copy_bytes(const model::DecoderModel& model, int64_t layer) const {
    int64_t bytes = 0;
    for (const auto& [name, tensor] : model.weights())
      if (name.rfind("model.layers." + std::to_string(layer) + ".", 0) == 0) bytes += tensor.numel() * 4;
    return bytes;
  }
  at::Tensor logits(const model::DecoderModel& model) const {
    c10::NoGradGuard no_grad;
    return model.forward(at::tensor(std::vector<int64_t>{1, 403, 407, 261, 378}).view({1, -1}));
  }
  // The weight set_weight puts in: a visible change (half of the original).
  at::Tensor changed_q0(const model::DecoderModel& model) const { return model.weight(kQ0).to(at::kFloat) * 0.5; }

  testing::ScratchDir scratch_;
  io::Checkpoint checkpoint_;
};

// --calibration-dtype auto: the fp16 checkpoint's activations in fp16 where
// the forward is float32; the float32 stories260K's, and any model computing
// in 16 bits already, in the compute dtype.
TEST_F(ComputeCopies, AutoCalibrationDtypeIsASixteenBitCheckpointsOwn) {
  EXPECT_EQ(quant::auto_calibration_dtype(*load()), at::kHalf);
  EXPECT_EQ(quant::auto_calibration_dtype(*model::DecoderModel::load(checkpoint_, at::kCPU, at::kBFloat16)),
            at::ScalarType::Undefined);
  const auto float32 = io::Checkpoint::open(source_path("data/stories260K").string());
  EXPECT_EQ(quant::auto_calibration_dtype(*model::DecoderModel::load(float32, at::kCPU)), at::ScalarType::Undefined);
}

TEST_F(ComputeCopies, SetWeightRefreshesTheCopiesAWholeModelKeeps) {
  auto fresh = load();
  fresh->set_weight(kQ0, changed_q0(*fresh));
  const at::Tensor expected = logits(*fresh);

  auto model = load();
  ASSERT_EQ(model->residency(), model::Residency::whole_model);  // 1 MB of float32 fits
  const at::Tensor before = logits(*model);
  EXPECT_EQ(model->resident_bytes(), model->parameter_count() * 4)
      << "every weight is kept as float32 (the tied embedding as the head's)";
  model->set_weight(kQ0, changed_q0(*model));
  EXPECT_FALSE(at::equal(logits(*model), before));
  EXPECT_TRUE(at::equal(logits(*model), expected));
}

// q/k/v and gate/up each run as one GEMM over their stacked weights: the
// stack is kept once (the members' copies are views of it, no second copy)
// and set_weight on any member refreshes it.
TEST_F(ComputeCopies, StackedWeightsAreKeptOnceAndRefreshedBySetWeight) {
  const std::string k0 = "model.layers.0.self_attn.k_proj.weight", up1 = "model.layers.1.mlp.up_proj.weight";
  auto fresh = load();
  for (const std::string& name : {kQ0, k0, up1}) fresh->set_weight(name, fresh->weight(name).to(at::kFloat) * 0.5);
  const at::Tensor expected = logits(*fresh);

  auto model = load();
  (void)logits(*model);
  EXPECT_EQ(model->stacked_groups(), 2 * model->num_layers()) << "q/k/v and gate/up of every layer";
  EXPECT_EQ(model->resident_bytes(), model->parameter_count() * 4) << "the stacks are not a second copy";
  for (const std::string& name : {kQ0, k0, up1}) model->set_weight(name, model->weight(name).to(at::kFloat) * 0.5);
  EXPECT_EQ(model->stacked_groups(), 2 * model->num_layers());
  EXPECT_TRUE(at::equal(logits(*model), expected));

  model->set_residency(model::Residency::held_layers);
  model->hold_layer(1);
  (void)logits(*model);
  EXPECT_EQ(model->stacked_groups(), 2) << "only the held layer's stacks are kept";
  EXPECT_EQ(model->resident_bytes(), layer_copy_bytes(*model, 1));
  model->release_layer(1);
  EXPECT_EQ(model->stacked_groups(), 0);
  EXPECT_TRUE(at::equal(logits(*model), expected));
}

TEST_F(ComputeCopies, HeldLayersKeepOnlyTheHeldLayer) {
  auto fresh = load();
  fresh->set_weight(kQ0, changed_q0(*fresh));
  const at::Tensor expected = logits(*fresh);

  auto model = load();
  (void)logits(*model);
  model->set_residency(model::Residency::held_layers);
  EXPECT_EQ(model->resident_bytes(), 0);
  model->hold_layer(0);
  EXPECT_EQ(model->resident_bytes(), layer_copy_bytes(*model, 0));
  (void)logits(*model);
  EXPECT_EQ(model->resident_bytes(), layer_copy_bytes(*model, 0)) << "a forward keeps nothing else";
  model->set_weight(kQ0, changed_q0(*model));
  EXPECT_TRUE(at::equal(logits(*model), expected)) << "the held copy of the replaced weight is refreshed";
  model->release_layer(0);
  EXPECT_EQ(model->resident_bytes(), 0);
  EXPECT_TRUE(at::equal(logits(*model), expected));
}

TEST_F(ComputeCopies, QuantizingLayerByLayerEqualsQuantizingAWholeResidentModel) {
  const auto tokenizer = tokenizer::Tokenizer::from_directory(checkpoint_.dir());
  const auto windows =
      data::calibration_windows(data::Dataset::parse("ptb"), *tokenizer, source_path("data"), 4, 0, 256);
  auto whole = load();
  auto held = load();
  held->set_residency(model::Residency::held_layers);
  quant::quantize_layers(*whole, windows, quant::GptqPbOptions{}, quant::LinearSelection{});
  quant::quantize_layers(*held, windows, quant::GptqPbOptions{}, quant::LinearSelection{});
  EXPECT_EQ(held->residency(), model::Residency::held_layers);
  EXPECT_EQ(held->resident_bytes(), 0) << "the driver leaves no layer held";
  for (const auto& [name, tensor] : whole->weights()) EXPECT_TRUE(at::equal(tensor, held->weight(name))) << name;
  EXPECT_FALSE(at::equal(whole->weight(kQ0), checkpoint_.tensor(kQ0)));
}

// What the tools set up (core/allocator.h): glibc accepts both settings
// (mallopt returns 0 for a value it refuses and keeps its default). Their
// effect is a benchmark's: page faults and seconds of scripts/bench_forward.sh.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PBLLM_UNDER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define PBLLM_UNDER_ASAN 1
#endif
TEST(Allocator, TheCLibraryAcceptsTheSettings) {
#ifdef PBLLM_UNDER_ASAN
  GTEST_SKIP() << "AddressSanitizer's allocator replaces glibc's, and its mallopt refuses every setting";
#endif
  EXPECT_TRUE(keep_freed_buffers());
}

}  // namespace
}  // namespace pbllm
