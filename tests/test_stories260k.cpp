// The bundled real model against references computed by an independent
// forward pass (data/reference/): per-story NLL, perplexity, greedy ids.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include <ATen/TensorOperators.h>
#include <ATen/ops/allclose.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>

#include "pbllm/eval/perplexity.h"
#include "pbllm/io/checkpoint.h"
#include "pbllm/model/decoder.h"
#include "test_support.h"

namespace pbllm {
namespace {

using pbllm::testing::source_path;

class Stories260K : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    checkpoint_ = new io::Checkpoint(io::Checkpoint::open(source_path("data/stories260K").string()));
    model_ = model::DecoderModel::load(*checkpoint_, at::kCPU).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete checkpoint_;
  }
  static io::Checkpoint* checkpoint_;
  static model::DecoderModel* model_;
};
io::Checkpoint* Stories260K::checkpoint_ = nullptr;
model::DecoderModel* Stories260K::model_ = nullptr;

// The chunked NLL that pbllm-eval uses equals log_softmax of the whole
// logits, gathered, whatever the chunk (here 100 rows: boundaries inside rows
// of the batch, a short last chunk).
TEST_F(Stories260K, ChunkedTargetNllEqualsLogSoftmaxOfTheLogits) {
  c10::NoGradGuard no_grad;
  at::manual_seed(3);
  const at::Tensor ids = at::randint(model_->config().vocab_size, {3, 129}, at::kLong);
  const at::Tensor hidden = model_->hidden_states(ids.narrow(1, 0, 128));
  const at::Tensor targets = ids.narrow(1, 1, 128);
  const at::Tensor expected = -at::log_softmax(model_->head(hidden), -1).gather(2, targets.unsqueeze(2)).squeeze(2);
  for (int64_t chunk : {0, 100, 1}) {
    const at::Tensor nll = model_->target_nll(hidden, targets, chunk);
    ASSERT_EQ(nll.sizes(), expected.sizes());
    EXPECT_TRUE(at::allclose(nll, expected, 1e-5, 1e-5)) << "chunk " << chunk << ": max difference "
                                                         << (nll - expected).abs().max().item<float>();
  }
  EXPECT_THROW(model_->target_nll(hidden, targets.narrow(1, 0, 5)), Error);
  EXPECT_THROW(model_->target_nll(hidden, targets + model_->config().vocab_size), Error);
}

TEST_F(Stories260K, PerStoryNllAndPerplexityMatchTheReference) {
  const nlohmann::json reference =
      io::read_json_file(source_path("data/reference/reference_ppl_tinystories_sample.json"));
  double total_nll = 0;
  int64_t total_tokens = 0;
  for (const auto& story : reference["stories"]) {
    const eval::NllSum nll = eval::sequence_nll(*model_, story["ids"].get<std::vector<int64_t>>());
    EXPECT_EQ(nll.tokens, story["scored"].get<int64_t>());
    EXPECT_NEAR(nll.nll, story["nll_sum"].get<double>(), 1e-4 * story["nll_sum"].get<double>());
    total_nll += nll.nll;
    total_tokens += nll.tokens;
  }
  EXPECT_EQ(total_tokens, 1804);
  const double perplexity = std::exp(total_nll / total_tokens);
  EXPECT_NEAR(perplexity, reference["ppl"].get<double>(), 1e-4 * reference["ppl"].get<double>());
}

// --compute-dtype bfloat16 on the CPU: the same stories within bfloat16's
// rounding of the reference (the products round to 8 bits of mantissa), and
// not the float32 numbers (it did compute in bfloat16).
TEST(Stories260KBFloat16, PerplexityIsTheReferenceWithinBFloat16Rounding) {
  const auto checkpoint = io::Checkpoint::open(source_path("data/stories260K").string());
  const auto model = model::DecoderModel::load(checkpoint, at::kCPU, at::kBFloat16);
  ASSERT_EQ(model->compute_dtype(), at::kBFloat16);
  const nlohmann::json reference =
      io::read_json_file(source_path("data/reference/reference_ppl_tinystories_sample.json"));
  double total_nll = 0, largest_difference = 0;
  int64_t total_tokens = 0;
  for (const auto& story : reference["stories"]) {
    const eval::NllSum nll = eval::sequence_nll(*model, story["ids"].get<std::vector<int64_t>>());
    largest_difference = std::max(largest_difference, std::abs(nll.nll - story["nll_sum"].get<double>()));
    total_nll += nll.nll;
    total_tokens += nll.tokens;
  }
  const double perplexity = std::exp(total_nll / total_tokens);
  std::printf("stories260K in bfloat16: perplexity %.6f (reference %.6f), largest story NLL difference %.4f\n",
              perplexity, reference["ppl"].get<double>(), largest_difference);
  EXPECT_NEAR(perplexity, reference["ppl"].get<double>(), 1e-2 * reference["ppl"].get<double>());
  EXPECT_GT(largest_difference, 1e-3) << "the forward did not compute in bfloat16";
}

TEST_F(Stories260K, GreedyDecodingFromBosGivesTheReferenceIds) {
  const nlohmann::json reference = io::read_json_file(source_path("data/reference/reference_greedy_64.json"));
  const auto expected = reference["ids"].get<std::vector<int64_t>>();
  const auto ids = eval::greedy_continue(*model_, {1}, static_cast<int64_t>(expected.size()));
  EXPECT_EQ(std::vector<int64_t>(ids.begin() + 1, ids.end()), expected);
}

// The KV cache (greedy_continue's path): a prompt, then one token at a time,
// gives the logits of a full forward over the whole sequence.
TEST_F(Stories260K, CachedStepsEqualAFullForward) {
  const at::Tensor all = at::arange(8, at::kLong).view({1, -1}) * 41 % 512;
  const at::Tensor full = model_->forward(all)[0];
  model::KvCache cache;
  std::vector<at::Tensor> steps = {model_->forward(all.narrow(1, 0, 5), &cache)[0]};
  for (int64_t i = 5; i < 8; ++i) steps.push_back(model_->forward(all.narrow(1, i, 1), &cache)[0]);
  EXPECT_EQ(cache.positions, 8);
  EXPECT_TRUE(at::allclose(at::cat(steps), full, 1e-4, 1e-4));
  EXPECT_ERROR_CONTAINS(model_->forward(all.narrow(1, 0, 2), &cache), "one token at a time");
}

TEST_F(Stories260K, LayerwiseInterfaceReportsEveryLinearInput) {
  struct Recorder : model::LinearInputObserver {
    std::vector<std::string> names;
    void observe(int64_t layer, const std::string& linear, const at::Tensor& input) override {
      EXPECT_EQ(layer, 2);
      EXPECT_EQ(input.size(-1), linear == "mlp.down_proj" ? 172 : 64) << linear;
      names.push_back(linear);
    }
  } recorder;
  const at::Tensor ids = at::arange(1, 9, at::kLong).unsqueeze(0);
  at::Tensor hidden = model_->embed(ids);
  for (int64_t i = 0; i < 2; ++i) hidden = model_->layer(i, hidden);
  model_->layer(2, hidden, &recorder);
  EXPECT_EQ(recorder.names, model_->linear_names());
  EXPECT_EQ(model_->linear_weight_name(2, "mlp.up_proj"), "model.layers.2.mlp.up_proj.weight");
}

TEST_F(Stories260K, TokenIdOutOfRangeIsAnError) {
  EXPECT_ERROR_CONTAINS(eval::sequence_nll(*model_, {1, 600}), "token id out of range");
}

TEST_F(Stories260K, SetWeightChangesTheForwardAndChecksShape) {
  auto copy = model::DecoderModel::load(*checkpoint_, at::kCPU);
  const std::string name = copy->linear_weight_name(0, "self_attn.q_proj");
  EXPECT_ERROR_CONTAINS(copy->set_weight(name, at::zeros({3, 3})), "shape");
  copy->set_weight(name, at::zeros({64, 64}));
  const std::vector<int64_t> ids = {1, 403, 407, 261, 378};
  EXPECT_NE(eval::sequence_nll(*copy, ids).nll, eval::sequence_nll(*model_, ids).nll);
}

}  // namespace
}  // namespace pbllm
