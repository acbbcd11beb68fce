// pbllm-qat's library: the partially binarized Linear against a plain
// restatement and finite differences, the whole QAT step against the
// reference's module in python torch on tiny Hugging Face models
// (oracle/make_qat_oracle.py), resume bit for bit, and bad input.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdlib>

#include "pbllm/io/checkpoint.h"
#include "pbllm/io/hf_export.h"
#include "pbllm/io/safetensors.h"
#include "pbllm/model/decoder.h"
#include "pbllm/model/device.h"
#include "pbllm/qat/binarized_linear.h"
#include "pbllm/qat/binarized_model.h"
#include "pbllm/qat/trainer.h"
#include "test_support.h"

namespace pbllm::qat {
namespace {

using testing::ScratchDir;
using testing::source_path;

// Differences relative to the tensors' own size.
double relative_difference(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() /
         std::max(1e-30, b.to(at::kDouble).abs().max().item<double>());
}

TEST(Qat, WeightQuant8BitWrapsNegativeCodesAsTorch) {
  // Row 0: min -0.2 -> zero point round(-0.2) = 0, range 0.6: codes
  // round(w / 0.6 * 255) = -85 (wraps to 171), 42 (42.5 to even), 170.
  // Row 1: min -0.7 -> zero point -1, range 1.4: (w + 1) / 1.4 * 255 = 54.6 -> 55,
  // 309.6 -> 310 - 256 = 54, 273.2 -> 273 - 256 = 17: positive weights come back negative.
  const at::Tensor w = at::tensor({-0.2f, 0.1f, 0.4f, -0.7f, 0.7f, 0.5f}).view({2, 3});
  const at::Tensor got = weight_quant_8bit(w, false);
  const float r0 = 0.6f / 255, r1 = 1.4f / 255;
  const at::Tensor range = (w.amax(1, true) - w.amin(1, true)) / 255;
  const at::Tensor expected = at::tensor({171.f, 42.f, 170.f, 55.f, 54.f, 17.f}).view({2, 3}) * range +
                              at::tensor({0.f, -1.f}).view({2, 1});
  EXPECT_TRUE(at::equal(got, expected)) << got << expected;
  EXPECT_NEAR(got[0][0].item<float>(), 171 * r0, 1e-6);  // a negative weight came back positive
  EXPECT_NEAR(got[1][1].item<float>(), 54 * r1 - 1, 1e-6);
  // The correction: zero point = min, codes 0..255, every weight within half a step.
  const at::Tensor corrected = weight_quant_8bit(w, true);
  EXPECT_LE((corrected - w).abs().max().item<float>(), 0.5f * 1.4f / 255 + 1e-6f);
  // A constant row keeps its values.
  EXPECT_TRUE(at::equal(weight_quant_8bit(at::full({1, 4}, 0.3f), false), at::full({1, 4}, 0.3f)));
}

TEST(Qat, MagnitudeOutliersAreTheTailsOfTheWholeMatrix) {
  const at::Tensor w = at::arange(100, at::kFloat).view({10, 10}) - 50;
  // int(100 * 0.1 / 2) = 5th smallest (-46) and int(100 * 0.95) = 95th (44): strictly outside.
  const at::Tensor outliers = magnitude_outliers(w, 0.1, "w");
  EXPECT_EQ(outliers.sum().item<int64_t>(), 4 + 5);
  EXPECT_TRUE(outliers[0][3].item<bool>());
  EXPECT_FALSE(outliers[0][4].item<bool>());
  EXPECT_TRUE(outliers[9][5].item<bool>());
  EXPECT_FALSE(outliers[9][4].item<bool>());
  EXPECT_ERROR_CONTAINS(magnitude_outliers(w, 0.01, "tiny.weight"), "tiny.weight: an outlier fraction of 0.01 selects no outlier");
}

TEST(Qat, BinaryScaleIsOneScalarOrPerRow) {
  const at::Tensor w = at::tensor({1.f, -3.f, 5.f, 2.f}).view({2, 2});
  const at::Tensor outliers = at::tensor({0, 0, 1, 0}).to(at::kBool).view({2, 2});
  EXPECT_TRUE(at::equal(binary_scale(w, outliers, false), at::full({1, 1}, 2.f)));  // (1 + 3 + 2) / 3
  EXPECT_TRUE(at::equal(binary_scale(w, outliers, true), at::tensor({2.f, 2.f}).view({2, 1})));
  EXPECT_TRUE(at::equal(binary_scale(w, at::ones({2, 2}, at::kBool), true), at::zeros({2, 1})));
}

// The gradient of sum(r * (x @ W_sim^T)) through partially_binarized against
// the same function written with the detach trick for the straight-through sign.
TEST(Qat, StraightThroughGradientsEqualAPlainRestatement) {
  at::manual_seed(3);
  for (const bool train_outliers : {false, true}) {
    const at::Tensor w0 = at::randn({6, 9}, at::kDouble), x = at::randn({4, 9}, at::kDouble);
    const at::Tensor r = at::randn({4, 6}, at::kDouble), outliers = at::rand({6, 9}) < 0.2;
    const at::Tensor scale = binary_scale(w0, outliers, false);
    const at::Tensor w = w0.clone().requires_grad_(true);
    (r * at::matmul(x, partially_binarized(w, outliers, scale, train_outliers).t())).sum().backward();

    const at::Tensor v = w0.clone().requires_grad_(true);
    const at::Tensor sign = v + (v.sign() - v).detach();  // sign forward, identity backward
    const at::Tensor kept = train_outliers ? v : v.detach();
    (r * at::matmul(x, at::where(outliers, kept, sign * scale).t())).sum().backward();
    EXPECT_TRUE(at::allclose(w.grad(), v.grad(), 1e-12, 1e-12)) << "train_outliers " << train_outliers;
    // Unclipped: the binarized weights' gradient is the incoming one times the scale, at any |w|.
    const at::Tensor incoming = at::matmul(r.t(), x);
    EXPECT_TRUE(at::allclose(w.grad().masked_select(~outliers), (incoming * scale).masked_select(~outliers)));
    EXPECT_EQ(w.grad().masked_select(outliers).abs().sum().item<double>() == 0, !train_outliers);
  }
}

// Where nothing is binarized (the outliers with --train_outlier, the input),
// the gradient is the function's: central differences in double precision.
TEST(Qat, FiniteDifferencesOnTheScaleFreePath) {
  at::manual_seed(5);
  const at::Tensor w0 = at::randn({5, 7}, at::kDouble), x0 = at::randn({3, 7}, at::kDouble);
  const at::Tensor outliers = at::rand({5, 7}) < 0.3, scale = binary_scale(w0, outliers, true);
  const auto loss = [&](const at::Tensor& w, const at::Tensor& x) {
    return at::matmul(x, partially_binarized(w, outliers, scale, true).t()).pow(2).sum();
  };
  const at::Tensor w = w0.clone().requires_grad_(true), x = x0.clone().requires_grad_(true);
  loss(w, x).backward();
  const double h = 1e-6;
  int checked = 0;
  for (int64_t i = 0; i < w0.numel(); ++i) {
    if (!outliers.reshape({-1})[i].item<bool>()) continue;
    at::Tensor plus = w0.clone(), minus = w0.clone();
    plus.view({-1})[i] += h;
    minus.view({-1})[i] -= h;
    const double numeric = (loss(plus, x0).item<double>() - loss(minus, x0).item<double>()) / (2 * h);
    EXPECT_NEAR(w.grad().reshape({-1})[i].item<double>(), numeric, 1e-6 * std::max(1.0, std::abs(numeric)));
    ++checked;
  }
  EXPECT_GT(checked, 3);
  for (int64_t i = 0; i < x0.numel(); ++i) {
    at::Tensor plus = x0.clone(), minus = x0.clone();
    plus.view({-1})[i] += h;
    minus.view({-1})[i] -= h;
    const double numeric = (loss(w0, plus).item<double>() - loss(w0, minus).item<double>()) / (2 * h);
    EXPECT_NEAR(x.grad().reshape({-1})[i].item<double>(), numeric, 1e-6 * std::max(1.0, std::abs(numeric)));
  }
}

TEST(Qat, BadOptionsAreOneLineErrors) {
  BinarizationOptions options;
  for (const double fraction : {0.0, 1.0, -0.1, 1.5, std::nan("")}) {
    options.outlier_fraction = fraction;
    EXPECT_ERROR_CONTAINS(options.validate(), "is outside (0, 1)");
  }
  options.outlier_fraction = 0.1;
  options.selection = OutlierSelection::hessian;
  EXPECT_ERROR_CONTAINS(options.validate(), "xnor_outlier_hessian needs --masks DIR");
  EXPECT_ERROR_CONTAINS(outlier_selection_from_method("xnor"), "unknown binarization method 'xnor'");
  TrainingOptions training;
  training.learning_rate = -1;
  EXPECT_ERROR_CONTAINS(training.validate(), "--lr -1 must be in (0, 1]");
  training.learning_rate = 1e-4;
  training.warmup_fraction = 1;
  EXPECT_ERROR_CONTAINS(training.validate(), "--warmup_ratio 1 is outside [0, 1)");
}

std::vector<std::vector<int32_t>> windows_of(const at::Tensor& ids, int64_t first, int64_t count) {
  std::vector<std::vector<int32_t>> windows;
  for (int64_t w = first; w < first + count; ++w) {
    const at::Tensor row = ids[w].to(at::kInt).contiguous();
    windows.emplace_back(row.data_ptr<int32_t>(), row.data_ptr<int32_t>() + row.numel());
  }
  return windows;
}

// A few steps of 2 x 2 windows at a learning rate that moves the weights.
TrainingOptions few_steps(int64_t steps) {
  TrainingOptions training;
  training.steps = steps;
  training.batch = 2;
  training.accumulation = 2;
  training.learning_rate = 1e-3;
  return training;
}

TEST(Qat, ResumedTrainingGoesOnBitForBit) {
  const auto checkpoint = io::Checkpoint::open(source_path("data/stories260K").string());
  const at::Tensor ids = at::randint(0, 512, {12, 24}, at::TensorOptions().dtype(at::kLong));
  const TrainingOptions training = few_steps(3);
  BinarizationOptions binarization;
  binarization.corrections.zero_point = true;
  ScratchDir scratch;

  auto whole = model::DecoderModel::load(checkpoint, at::kCPU, at::kFloat);
  BinarizedModel whole_binarized(*whole, binarization);
  Trainer uninterrupted(*whole, whole_binarized, training);
  for (int64_t s = 0; s < 3; ++s) uninterrupted.step(windows_of(ids, 4 * s, 4));

  std::vector<at::Tensor> resumed_parameters;
  {
    auto first = model::DecoderModel::load(checkpoint, at::kCPU, at::kFloat);
    BinarizedModel binarized(*first, binarization);
    Trainer trainer(*first, binarized, training);
    for (int64_t s = 0; s < 2; ++s) trainer.step(windows_of(ids, 4 * s, 4));
    trainer.save_state(scratch / "state.safetensors", nlohmann::json::array({"step 1", "step 2"}));
  }
  auto second = model::DecoderModel::load(checkpoint, at::kCPU, at::kFloat);
  BinarizedModel binarized(*second, binarization);
  Trainer trainer(*second, binarized, training);
  EXPECT_EQ(trainer.restore_state(scratch / "state.safetensors"), nlohmann::json::array({"step 1", "step 2"}));
  EXPECT_EQ(trainer.steps_done(), 2);
  trainer.step(windows_of(ids, 8, 4));
  const auto a = whole_binarized.parameters(), b = binarized.parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(at::equal(a[i], b[i])) << whole_binarized.parameter_names()[i];
  const auto ea = whole_binarized.effective_weights(at::kFloat), eb = binarized.effective_weights(at::kFloat);
  for (size_t i = 0; i < ea.size(); ++i) EXPECT_TRUE(at::equal(ea[i].second, eb[i].second)) << ea[i].first;
}

// Every packed Linear decodes to the weight the fake-quant folder saves (in
// the checkpoint's dtype), bit for bit.
void expect_packed_equal_saved(BinarizedModel& binarized, const model::DecoderModel& model, const std::string& label) {
  const pack::PackedLinears packed = binarized.packed_linears();
  int64_t compared = 0;
  for (const auto& [name, weight] : binarized.effective_weights(at::kFloat)) {
    const auto found = packed.find(name);
    if (found == packed.end()) continue;  // biases
    const at::ScalarType dtype = found->second->dtype;
    EXPECT_EQ(dtype, (model.weights().count(name) ? model.weight(name) : model.weight(model.head_weight_name())).scalar_type());
    EXPECT_TRUE(at::equal(pack::decode_linear(*found->second), weight.to(dtype).to(at::kFloat))) << label << " " << name;
    ++compared;
  }
  EXPECT_EQ(compared, binarized.binarized_linears()) << label;
}

// The folders pbllm-qat --save writes, fake-quant and packed, loaded back:
// the logits of the trained model as the run evaluates it for a window
// (decoded weights, bit for bit), and nearly for one token (every Linear's
// packed GEMV: the head's and OPT's project_in / project_out too).
void expect_saved_folders_compute_alike(BinarizedModel& binarized, const model::DecoderModel& trained,
                                        const io::Checkpoint& source, const std::filesystem::path& scratch,
                                        const std::string& label) {
  nlohmann::json report = nlohmann::json::object();
  save_trained_model(binarized, source, scratch / "hf", false, {{"note", "test"}}, report);
  save_trained_model(binarized, source, scratch / "pb", true, {{"note", "test"}}, report);
  EXPECT_GT(report.at("size").at("linear_bits_per_weight").get<double>(), 1) << label;
  auto hf = model::DecoderModel::load(io::Checkpoint::open((scratch / "hf").string()), at::kCPU);
  auto pb = model::DecoderModel::load(io::Checkpoint::open((scratch / "pb").string()), at::kCPU);
  EXPECT_EQ(static_cast<int64_t>(pb->packed_linears().size()), binarized.binarized_linears()) << label;
  const at::Tensor ids = at::randint(0, hf->config().vocab_size, {1, 24}, at::TensorOptions().dtype(at::kLong));
  binarized.set_training(false);
  EXPECT_TRUE(at::equal(trained.forward(ids), hf->forward(ids))) << label;
  EXPECT_TRUE(at::equal(hf->forward(ids), pb->forward(ids))) << label;
  const at::Tensor one = ids.slice(1, 0, 1), expected = hf->forward(one);
  EXPECT_LT((pb->forward(one) - expected).abs().max().item<double>(), 1e-4 * expected.abs().max().item<double>())
      << label;
}

TEST(Qat, PackedLinearsDecodeToTheSavedWeights) {
  const auto source = io::Checkpoint::open(source_path("data/stories260K").string());
  const at::Tensor ids = at::randint(0, 512, {4, 24}, at::TensorOptions().dtype(at::kLong));
  ScratchDir scratch;
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    // stories260K as a checkpoint of that dtype.
    io::NamedTensors tensors;
    for (const std::string& name : source.tensor_names()) tensors.emplace_back(name, source.tensor(name).to(dtype));
    const auto dir = scratch / at::toString(dtype);
    io::save_hf_directory(source.dir(), dir, tensors, {});
    const auto checkpoint = io::Checkpoint::open(dir.string());
    for (const bool corrected : {false, true}) {
      auto model = model::DecoderModel::load(checkpoint, at::kCPU, at::kFloat);
      BinarizationOptions binarization;
      binarization.corrections.zero_point = binarization.corrections.per_row_scale = corrected;
      BinarizedModel binarized(*model, binarization);
      TrainingOptions training = few_steps(1);
      training.warmup_fraction = 0;  // else step 1's lr is 0
      const at::Tensor before = binarized.parameters()[0].detach().clone();
      Trainer(*model, binarized, training).step(windows_of(ids, 0, 4));
      EXPECT_FALSE(at::equal(before, binarized.parameters()[0])) << "the latent weights must move";
      const std::string label = str_cat(at::toString(dtype), corrected ? " corrected" : "");
      expect_packed_equal_saved(binarized, *model, label);
      expect_saved_folders_compute_alike(binarized, *model, checkpoint, dir / (corrected ? "corrected" : "reference"),
                                         label);
    }
  }
  auto model = model::DecoderModel::load(source, at::kCPU, at::kFloat);
  BinarizationOptions binarization;
  binarization.train_outliers = true;
  BinarizedModel trained_outliers(*model, binarization);
  EXPECT_ERROR_CONTAINS(trained_outliers.packed_linears(), "trained outliers are off their 8-bit grid");
}

// On a GPU the forward runs under bf16 autocast (the latent weights and AdamW
// in float32): the losses follow the CPU's float32 ones to bf16's precision,
// and the trained weights pack exactly. Skips without a GPU.
TEST(Cuda, QatBf16AutocastStepsFollowTheCpu) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA GPU on this machine: skipped";
  const auto checkpoint = io::Checkpoint::open(source_path("data/stories260K").string());
  const at::Tensor ids = at::randint(0, 512, {12, 64}, at::TensorOptions().dtype(at::kLong));
  const TrainingOptions training = few_steps(3);
  BinarizationOptions binarization;
  binarization.corrections.zero_point = true;
  std::vector<double> losses[2];
  for (const int on_gpu : {0, 1}) {
    auto model = model::DecoderModel::load(checkpoint, model::parse_device(on_gpu ? "cuda" : "cpu"), at::kFloat);
    BinarizedModel binarized(*model, binarization);
    Trainer trainer(*model, binarized, training);
    for (int64_t s = 0; s < training.steps; ++s) losses[on_gpu].push_back(trainer.step(windows_of(ids, 4 * s, 4)).loss);
    if (on_gpu) expect_packed_equal_saved(binarized, *model, "cuda");
  }
  for (int64_t s = 0; s < training.steps; ++s)
    EXPECT_NEAR(losses[1][s], losses[0][s], 2e-2 * losses[0][s]) << "step " << s + 1;
}

// --- against oracle/make_qat_oracle.py -------------------------------------

std::filesystem::path qat_oracle_dir() {
  const char* root = std::getenv("PBLLM_QAT_ORACLE_DIR");
  if (root == nullptr) throw Error("PBLLM_QAT_ORACLE_DIR unset: run through ctest, which makes the QAT oracle first");
  return root;
}

TEST(QatOracleSchedule, LearningRateEqualsTransformers) {
  const io::SafetensorsFile factors((qat_oracle_dir() / "lr_factors.safetensors").string());
  for (const int64_t steps : {3, 30, 300, 1000}) {
    const at::Tensor expected = factors.tensor(str_cat("steps_", steps));
    for (int64_t s = 0; s < steps; ++s)
      EXPECT_NEAR(learning_rate_factor(s, steps, 0.05 * steps), expected[s].item<double>(), 1e-12)
          << "step " << s << " of " << steps;
  }
}

class QatOracle : public ::testing::TestWithParam<std::string> {};

TEST_P(QatOracle, StepsEqualTheReferenceModuleInPythonTorch) {
  const std::filesystem::path dir = qat_oracle_dir() / GetParam();
  const io::SafetensorsFile oracle((dir / "oracle.safetensors").string());
  const auto settings = nlohmann::json::parse(oracle.metadata().at("settings"));
  BinarizationOptions binarization;
  binarization.outlier_fraction = settings.at("outlier_fraction").get<double>();
  binarization.train_outliers = settings.at("train_outlier").get<bool>();
  binarization.corrections.zero_point = settings.at("zero_point").get<bool>();
  binarization.corrections.per_row_scale = settings.at("per_row_scale").get<bool>();
  binarization.corrections.fresh_scale = settings.at("fresh_scale").get<bool>();
  binarization.corrections.keep_head = settings.at("keep_head").get<bool>();
  TrainingOptions training;
  training.steps = settings.at("steps").get<int64_t>();
  training.learning_rate = settings.at("lr").get<double>();
  training.batch = settings.at("batch").get<int64_t>();
  training.accumulation = settings.at("accumulation").get<int64_t>();

  const auto checkpoint = io::Checkpoint::open(dir.string());
  auto model = model::DecoderModel::load(checkpoint, at::kCPU, at::kFloat);
  BinarizedModel binarized(*model, binarization);
  // The oracle's names are transformers' modules': the head is lm_head, tied or not.
  const std::string head = model->head_weight_name();
  const auto oracle_name = [&](const std::string& name) { return name == head ? "lm_head.weight" : name; };
  const auto names = binarized.parameter_names();
  int64_t weights = 0;
  for (const std::string& name : names)
    if (name.size() > 7 && name.substr(name.size() - 7) == ".weight") {
      EXPECT_TRUE(oracle.contains("latent0/" + oracle_name(name))) << name;
      ++weights;
    }
  int64_t oracle_weights = 0;
  for (const std::string& name : oracle.names()) oracle_weights += name.rfind("latent0/", 0) == 0;
  EXPECT_EQ(weights, oracle_weights);  // every Linear the reference replaces, and no other
  {
    const auto parameters = binarized.parameters();
    for (size_t i = 0; i < names.size(); ++i)
      if (oracle.contains("latent0/" + oracle_name(names[i])))
        EXPECT_TRUE(at::equal(parameters[i], oracle.tensor("latent0/" + oracle_name(names[i])))) << names[i];
  }

  Trainer trainer(*model, binarized, training);
  const at::Tensor ids = oracle.tensor("ids");
  const at::Tensor losses = oracle.tensor("losses");
  const int64_t per_step = training.windows_per_step();
  const auto key_of = [&](const char* kind, const std::string& name) { return str_cat(kind, "/", oracle_name(name)); };
  const auto parameters = binarized.parameters();
  for (int64_t s = 0; s < training.steps; ++s) {
    const StepReport report = trainer.step(windows_of(ids, s * per_step, per_step));
    EXPECT_NEAR(report.loss, losses[s].item<double>(), 1e-5 * losses[s].item<double>()) << "step " << s;
    if (s > 0) continue;
    // The first step's clipped gradients (the STE, the where, the loss, the
    // clipping). Float32 rounding scales with the activations, not with each
    // gradient: one that is nearly zero (k_proj's bias has none at all:
    // softmax ignores it; a saturated attention's q and k) is compared at a
    // hundredth of the largest gradient's scale. A ReLU whose input rounds
    // to either side of 0 changes its unit's gradient: hence 1e-3.
    double largest = 0;
    for (size_t i = 0; i < names.size(); ++i)
      largest = std::max(largest, oracle.tensor(key_of("grad0", names[i])).abs().max().item<double>());
    for (size_t i = 0; i < names.size(); ++i) {
      const std::string key = key_of("grad0", names[i]);
      ASSERT_TRUE(oracle.contains(key)) << key;
      const at::Tensor expected = oracle.tensor(key);
      const double scale = std::max(expected.abs().max().item<double>(), 1e-2 * largest);
      EXPECT_LT((parameters[i].grad() - expected).abs().max().item<double>(), 1e-3 * scale) << key;
    }
  }
  // After the steps: AdamW divides each gradient by its own size, so a weight
  // whose gradient is rounding noise (k_proj's bias has none at all: softmax
  // ignores it) moves by +-lr either way, and so does the row of a ReLU unit
  // at its kink (about one unit of OPT's 96 here). Nearly every weight agrees
  // closely; none differs by more than the steps' largest possible moves.
  int64_t agreeing = 0, total = 0;
  double moved = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    const bool bias = names[i].size() > 5 && names[i].substr(names[i].size() - 5) == ".bias";
    const std::string key = key_of(bias ? "bias" : "latent", names[i]);
    ASSERT_TRUE(oracle.contains(key)) << key;
    const at::Tensor difference = (parameters[i] - oracle.tensor(key)).abs();
    agreeing += (difference < 1e-6).sum().item<int64_t>();
    total += difference.numel();
    if (!bias) moved = std::max(moved, (oracle.tensor(key) - oracle.tensor(key_of("latent0", names[i]))).abs().max().item<double>());
    EXPECT_LT(difference.max().item<double>(), 2.0 * training.steps * training.learning_rate) << key;
  }
  EXPECT_GT(static_cast<double>(agreeing) / total, 0.99) << agreeing << " of " << total << " weights agree";
  EXPECT_GT(moved, 1e-4) << "the steps must move the weights for the comparison to mean anything";
  for (const auto& [name, weight] : binarized.effective_weights(at::kFloat)) {
    if (!oracle.contains("effective/" + name)) continue;  // biases
    // A sign flipped by a noise-driven move flips one binarized weight.
    const at::Tensor expected = oracle.tensor("effective/" + name);
    EXPECT_GT((weight - expected).abs().le(1e-5 * expected.abs().max()).to(at::kFloat).mean().item<double>(), 0.995)
        << name;
  }
  if (binarization.train_outliers) return;
  expect_packed_equal_saved(binarized, *model, GetParam());
  ScratchDir scratch;
  expect_saved_folders_compute_alike(binarized, *model, checkpoint, scratch.path(), GetParam());
}

INSTANTIATE_TEST_SUITE_P(Cases, QatOracle,
                         ::testing::Values("llama_tied_reference", "llama_tied_corrected", "llama_keep_head",
                                           "opt_project_reference"));

}  // namespace
}  // namespace pbllm::qat
