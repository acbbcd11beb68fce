// pbllm's OPT and LLaMA forwards against Hugging Face transformers on tiny
// random models that tests/oracle/make_hf_models.py saved in every layout
// (safetensors, sharded safetensors, .bin, sharded .bin; fp32, fp16, bf16).
#include <ATen/TensorOperators.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/log_softmax.h>

#include <cstdlib>
#include <memory>

#include "pbllm/io/checkpoint.h"
#include "pbllm/io/safetensors.h"
#include "pbllm/model/decoder.h"
#include "test_support.h"

namespace pbllm {
namespace {

class TransformersOracle : public ::testing::TestWithParam<std::string> {
 protected:
  // The oracle model GetParam() and transformers' ids and logits on it.
  void SetUp() override {
    const char* root = std::getenv("PBLLM_ORACLE_DIR");
    ASSERT_NE(root, nullptr) << "PBLLM_ORACLE_DIR unset: run through ctest, which makes the oracle models first";
    const std::filesystem::path dir = std::filesystem::path(root) / GetParam();
    const io::SafetensorsFile oracle((dir / "oracle.safetensors").string());
    ids_ = oracle.tensor("ids").clone();  // owned: the file is closed at the end of SetUp
    expected_logits_ = oracle.tensor("logits").clone();
    model_ = model::DecoderModel::load(io::Checkpoint::open(dir.string()), at::kCPU);
  }
  at::Tensor ids_, expected_logits_;
  std::unique_ptr<model::DecoderModel> model_;
};

TEST_P(TransformersOracle, LogitsAgreeWithinOneInTenThousand) {
  const at::Tensor logits = model_->forward(ids_);
  ASSERT_EQ(logits.sizes(), expected_logits_.sizes());
  const double error = (logits - expected_logits_).abs().max().item<double>();
  const double scale = expected_logits_.abs().max().item<double>();
  EXPECT_LE(error, 1e-4 * scale) << GetParam() << ": max |diff| " << error << ", max |logit| " << scale;
}

// pbllm-eval's chunked NLL (in chunks of 3 positions) against log_softmax of
// transformers' logits, on every layout (OPT-350m's project_out included).
TEST_P(TransformersOracle, ChunkedTargetNllAgreesWithTheLogits) {
  const int64_t scored = ids_.size(1) - 1;
  const at::Tensor targets = ids_.narrow(1, 1, scored);
  const at::Tensor expected =
      -at::log_softmax(expected_logits_.narrow(1, 0, scored), -1).gather(2, targets.unsqueeze(2)).squeeze(2);
  const at::Tensor nll = model_->target_nll(model_->hidden_states(ids_.narrow(1, 0, scored)), targets, 3);
  ASSERT_EQ(nll.sizes(), expected.sizes());
  const double error = (nll - expected).abs().max().item<double>();
  EXPECT_LE(error, 1e-3) << GetParam() << ": max |diff| " << error;
}

INSTANTIATE_TEST_SUITE_P(Models, TransformersOracle,
                         ::testing::Values("opt_pre_ln", "opt_post_ln_project", "opt_sharded_bin", "llama_gqa_sharded",
                                           "llama_untied_bin", "llama_bf16", "llama_fp16_sharded_bin"));

}  // namespace
}  // namespace pbllm
