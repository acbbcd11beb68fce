// GPTQ-PB end to end on the bundled stories260K against the reference
// implementation's own run (PB-LLM's run.py path, transformers 4.35.2, slow
// LlamaTokenizer, CPU): calibration ptb, nsamples 32, seed 0, seqlen 512,
// xnor, low_frac 0.9, salient_metric hessian, high_bit 8, percdamp 0.01 gave
// layer 0 q_proj loss 12884.26 and perplexity ptb test 218.35, wikitext2 test
// 194.83.
#include <ATen/TensorOperators.h>

#include <cmath>
#include <cstdio>
#include <optional>

#include "pbllm/data/datasets.h"
#include "pbllm/eval/evaluate.h"
#include "pbllm/io/checkpoint.h"
#include "pbllm/model/decoder.h"
#include "pbllm/quant/layer_driver.h"
#include "pbllm/report/profile.h"
#include "test_support.h"

namespace pbllm {
namespace {

using pbllm::testing::source_path;

// The reference run's settings: xnor, low_frac 0.9, hessian, high_bit 8, percdamp 0.01,
// and its three factorisations (MatchesTheReferenceRun also runs one-cholesky).
quant::GptqPbOptions reference_run_options() {
  quant::GptqPbOptions options;
  options.inverse_factor = quant::InverseFactor::reference;
  options.low.method = LowBitMethod::xnor;
  options.low_frac = 0.9;
  options.metric = quant::SalientMetric::hessian;
  options.high_bit = 8;
  options.percdamp = 0.01;
  return options;
}

// The reference run's inputs: stories260K, its tokenizer, ptb calibration 32 x 512 with seed 0.
struct ReferenceRunInputs {
  std::unique_ptr<model::DecoderModel> model;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  std::vector<std::vector<int32_t>> windows;
};

ReferenceRunInputs load_reference_run_inputs(std::optional<at::ScalarType> compute_dtype = std::nullopt) {
  const auto checkpoint = io::Checkpoint::open(source_path("data/stories260K").string());
  ReferenceRunInputs inputs;
  inputs.model = model::DecoderModel::load(checkpoint, at::kCPU, compute_dtype);
  inputs.tokenizer = tokenizer::Tokenizer::from_directory(checkpoint.dir());
  inputs.windows =
      data::calibration_windows(data::Dataset::parse("ptb"), *inputs.tokenizer, source_path("data"), 32, 0, 512);
  return inputs;
}

// The reference's evaluation: the bundled test sets at seqlen 512.
eval::EvaluationOptions reference_evaluation(std::vector<std::string> datasets) {
  eval::EvaluationOptions evaluation;
  evaluation.datasets = std::move(datasets);
  evaluation.data_dir = source_path("data");
  evaluation.seqlen = 512;
  return evaluation;
}

// The reference run, with U made either way (the three factorisations, or one
// Cholesky and a triangular inverse): the same pinned numbers.
class QuantizeStories260K : public ::testing::TestWithParam<quant::InverseFactor> {};

TEST_P(QuantizeStories260K, MatchesTheReferenceRun) {
  const quant::InverseFactor inverse_factor = GetParam();
  const auto [model, tokenizer, windows] = load_reference_run_inputs();
  quant::GptqPbOptions options = reference_run_options();
  options.inverse_factor = inverse_factor;
  report::Profile& profile = report::run_profile();
  profile.reset();
  const auto reports = quant::quantize_layers(*model, windows, options, quant::LinearSelection{});
  ASSERT_EQ(reports.size(), 35u);
  // The profile's FLOPs, counted by hand from the checkpoint's shapes (5 layers of hidden 64, MLP 172:
  // q 64x64, k and v 32x64, o 64x64, gate and up 172x64, down 64x172, 45312 Linear weights per layer;
  // 32 x 512 tokens). A Hessian for q/k/v, o, gate/up (64 columns) and one for down (172).
  const double tokens = 32 * 512;
  EXPECT_DOUBLE_EQ(profile.flops(report::Phase::hessian), 5 * 2 * tokens * (3 * 64 * 64 + 172 * 172));
  // Either way 4n^3/3 at these sizes: LAPACK's Cholesky n^3/3 + potri 2n^3/3 + Cholesky n^3/3, or a
  // Cholesky and a triangular solve against the identity (n^3).
  EXPECT_DOUBLE_EQ(profile.flops(report::Phase::factorisation), 5 * (3 * std::pow(64, 3) + std::pow(172, 3)) * 4 / 3);
  // Two passes per layer: 2 FLOPs per weight and token, and the causal attention's 2 x 512^2 x 64 per window.
  EXPECT_DOUBLE_EQ(profile.flops(report::Phase::forward), 5 * 2 * (2 * tokens * 45312 + 2 * 32 * 512.0 * 512 * 64));
  // One block of 64 columns for 6 Linears (rows 64, 32, 32, 64, 172, 172), blocks of 128 and 44 for down
  // (64 rows): rows w (w - 1) per block, and down's trailing GEMM 2 x 64 x 128 x 44.
  EXPECT_DOUBLE_EQ(profile.flops(report::Phase::column_loop),
                   5 * ((64 + 32 + 32 + 64 + 172 + 172) * 64.0 * 63 + 64 * (128.0 * 127 + 44.0 * 43)));
  EXPECT_DOUBLE_EQ(profile.flops(report::Phase::trailing_gemms), 5 * 2 * 64 * 128.0 * 44);
  for (const report::Phase phase : {report::Phase::mask, report::Phase::column_loop, report::Phase::trailing_gemms})
    EXPECT_GT(profile.seconds(phase), 0) << report::phase_name(phase);
  EXPECT_EQ(reports[0].name, "self_attn.q_proj");
  EXPECT_NEAR(reports[0].loss, 12884.26, 0.005 * 12884.26);
  // Pinned from pbllm's own run of this configuration (the run whose layer 0
  // loss and perplexities match the reference): later layers, where the
  // reference printed no figure we have.
  EXPECT_NEAR(reports.back().loss, 1313.19, 0.005 * 1313.19);  // layer 4 mlp.down_proj
  for (const auto& report : reports) EXPECT_NEAR(report.salient_fraction, 0.1, 0.001) << report.name;

  const auto results = eval::evaluate_datasets(*model, *tokenizer, reference_evaluation({"ptb", "wikitext2"}));
  std::printf("layer 0 q_proj loss %.2f, layer 4 down_proj %.2f; perplexity ptb %.4f, wikitext2 %.4f\n",
              reports[0].loss, reports.back().loss, results[0].result.perplexity, results[1].result.perplexity);
  EXPECT_NEAR(results[0].result.perplexity, 218.35, 0.005 * 218.35);
  EXPECT_NEAR(results[1].result.perplexity, 194.83, 0.005 * 194.83);
}

// The calibration activations held in bfloat16 between layers (each window
// still computed in float32): the same run moves by a rounding of the layer
// inputs. Measured: layer 0 q_proj 12884.27 -> 12906.44, ptb 218.35 -> 219.05,
// wikitext2 194.83 -> 201.52 (float16: 174.38 / 170.20: at low_frac 0.9 the
// masks react to last bits, which is why 16 bits is an option, not the default).
TEST(QuantizeStories260KCalibration, BFloat16ActivationsStayNearTheReferenceRun) {
  const auto [model, tokenizer, windows] = load_reference_run_inputs();
  quant::GptqPbOptions options = reference_run_options();
  options.calibration_dtype = at::kBFloat16;
  const auto reports = quant::quantize_layers(*model, windows, options, quant::LinearSelection{});
  ASSERT_EQ(reports.size(), 35u);
  EXPECT_NEAR(reports[0].loss, 12884.26, 0.005 * 12884.26);
  EXPECT_GT(std::abs(reports[0].loss - 12884.2653), 1) << "the layer inputs were not rounded to bfloat16";
  const auto results = eval::evaluate_datasets(*model, *tokenizer, reference_evaluation({"ptb"}));
  EXPECT_NEAR(results[0].result.perplexity, 218.35, 0.01 * 218.35);
}

// The whole run computing in bfloat16 (--compute-dtype bfloat16: the forward,
// the Hessians' activations and the evaluation; GPTQ-PB itself in float32).
// Layer 0's first loss stays within 1%; ptb 218.35 -> 204.93, while the
// unquantized model's perplexity moves 0.06% (Stories260KBFloat16): the masks
// at low_frac 0.9 react to last bits, as with the 16-bit activations above.
TEST(QuantizeStories260KCalibration, BFloat16ComputeStaysNearTheReferenceRun) {
  const auto [model, tokenizer, windows] = load_reference_run_inputs(at::kBFloat16);
  const auto reports = quant::quantize_layers(*model, windows, reference_run_options(), quant::LinearSelection{});
  ASSERT_EQ(reports.size(), 35u);
  EXPECT_NEAR(reports[0].loss, 12884.26, 0.01 * 12884.26);
  EXPECT_GT(std::abs(reports[0].loss - 12884.2653), 1) << "the forward did not compute in bfloat16";
  const auto results = eval::evaluate_datasets(*model, *tokenizer, reference_evaluation({"ptb"}));
  EXPECT_NEAR(results[0].result.perplexity, 218.35, 0.08 * 218.35);
}

// float16 activations that overflow: one line naming where, before any Hessian.
TEST(QuantizeStories260KCalibration, Float16OverflowIsOneLine) {
  const auto checkpoint = io::Checkpoint::open(source_path("data/stories260K").string());
  auto model = model::DecoderModel::load(checkpoint, at::kCPU);
  const std::string embedding = "model.embed_tokens.weight";
  model->set_weight(embedding, model->weight(embedding) * 1e6);
  const std::vector<std::vector<int32_t>> windows = {{1, 2, 3, 4, 5, 6, 7, 8}};
  quant::GptqPbOptions options;
  options.calibration_dtype = at::kHalf;
  EXPECT_ERROR_CONTAINS(quant::quantize_layers(*model, windows, options, quant::LinearSelection{}),
                        "the embeddings overflow float16 (above 65504): hold the calibration activations in bfloat16");
  options.calibration_dtype = at::kInt;
  EXPECT_ERROR_CONTAINS(quant::quantize_layers(*model, windows, options, quant::LinearSelection{}),
                        "calibration activations in Int: float32, float16 or bfloat16 only");
}

INSTANTIATE_TEST_SUITE_P(InverseFactors, QuantizeStories260K,
                         ::testing::Values(quant::InverseFactor::reference, quant::InverseFactor::one_cholesky),
                         [](const auto& info) {
                           return info.param == quant::InverseFactor::reference ? "Reference" : "OneCholesky";
                         });

}  // namespace
}  // namespace pbllm
