// pbllm's OPT and LLaMA forwards against Hugging Face transformers on tiny
// random models that tests/oracle/make_hf_models.py saved in every layout
// (safetensors, sharded safetensors, .bin, sharded .bin; fp32, fp16, bf16).
#include <ATen/TensorOperators.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/log_softmax.h>

#include <cstdlib>

#include "pbllm/io/checkpoint.h"
#include "pbllm/io/safetensors.h"
#include "pbllm/model/decoder.h"
#include "test_support.h"

namespace pbllm {
namespace {

class TransformersOracle : public ::testing::TestWithParam<std::string> {};

TEST_P(TransformersOracle, LogitsAgreeWithinOneInTenThousand) {
  const char* root = std::getenv("PBLLM_ORACLE_DIR");
  ASSERT_NE(root, nullptr) << "PBLLM_ORACLE_DIR unset: run through ctest, which makes the oracle models first";
  const std::filesystem::path dir = std::filesystem::path(root) / GetParam();
  const io::SafetensorsFile oracle((dir / "oracle.safetensors").string());
  const auto checkpoint = io::Checkpoint::open(dir.string());
  const auto model = model::DecoderModel::load(checkpoint, at::kCPU);
  const at::Tensor expected = oracle.tensor("logits");
  const at::Tensor logits = model->forward(oracle.tensor("ids"));
  ASSERT_EQ(logits.sizes(), expected.sizes());
  const double error = (logits - expected).abs().max().item<double>();
  const double scale = expected.abs().max().item<double>();
  EXPECT_LE(error, 1e-4 * scale) << GetParam() << ": max |diff| " << error << ", max |logit| " << scale;
}

// pbllm-eval's chunked NLL (in chunks of 3 positions) against log_softmax of
// transformers' logits, on every layout (OPT-350m's project_out included).
TEST_P(TransformersOracle, ChunkedTargetNllAgreesWithTheLogits) {
  const char* root = std::getenv("PBLLM_ORACLE_DIR");
  ASSERT_NE(root, nullptr) << "PBLLM_ORACLE_DIR unset: run through ctest, which makes the oracle models first";
  const std::filesystem::path dir = std::filesystem::path(root) / GetParam();
  const io::SafetensorsFile oracle((dir / "oracle.safetensors").string());
  const auto checkpoint = io::Checkpoint::open(dir.string());
  const auto model = model::DecoderModel::load(checkpoint, at::kCPU);
  const at::Tensor ids = oracle.tensor("ids");
  const int64_t scored = ids.size(1) - 1;
  const at::Tensor targets = ids.narrow(1, 1, scored);
  const at::Tensor expected =
      -at::log_softmax(oracle.tensor("logits").narrow(1, 0, scored), -1).gather(2, targets.unsqueeze(2)).squeeze(2);
  const at::Tensor nll = model->target_nll(model->hidden_states(ids.narrow(1, 0, scored)), targets, 3);
  ASSERT_EQ(nll.sizes(), expected.sizes());
  const double error = (nll - expected).abs().max().item<double>();
  EXPECT_LE(error, 1e-3) << GetParam() << ": max |diff| " << error;
}

INSTANTIATE_TEST_SUITE_P(Models, TransformersOracle,
                         ::testing::Values("opt_pre_ln", "opt_post_ln_project", "opt_sharded_bin", "llama_gqa_sharded",
                                           "llama_untied_bin", "llama_bf16", "llama_fp16_sharded_bin"));

}  // namespace
}  // namespace pbllm
