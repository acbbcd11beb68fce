// Token ids, calibration window starts and perplexity against Hugging Face
// transformers / tokenizers and Python's random on the bundled data
// (fixtures made by tests/oracle/make_token_oracle.py).
#include <ATen/ops/arange.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "pbllm/data/datasets.h"
#include "pbllm/data/python_random.h"
#include "pbllm/eval/evaluate.h"
#include "pbllm/io/checkpoint.h"
#include "pbllm/io/safetensors.h"
#include "pbllm/tokenizer/tokenizer.h"
#include "test_support.h"

namespace pbllm {
namespace {

using pbllm::testing::source_path;

std::filesystem::path oracle_dir() {
  const char* root = std::getenv("PBLLM_TOKEN_ORACLE_DIR");
  if (root == nullptr) throw Error("PBLLM_TOKEN_ORACLE_DIR unset: run through ctest, which makes the oracle first");
  return root;
}

std::vector<int32_t> oracle_ids(const std::string& key) {
  const at::Tensor ids = io::SafetensorsFile((oracle_dir() / "token_ids.safetensors").string()).tensor(key);
  return std::vector<int32_t>(ids.data_ptr<int32_t>(), ids.data_ptr<int32_t>() + ids.numel());
}

struct TokenCase {
  std::string name;    // key prefix in the oracle file
  std::string folder;  // tokenizer folder: relative to the source tree, or "oracle:" + name
};
std::ostream& operator<<(std::ostream& out, const TokenCase& c) { return out << c.name; }

class TokenIdsOracle : public ::testing::TestWithParam<TokenCase> {};

TEST_P(TokenIdsOracle, EvaluationIdsOfWholeFilesEqualHuggingFace) {
  const TokenCase& c = GetParam();
  if (c.folder.rfind("models/", 0) == 0 && !std::filesystem::exists(source_path(c.folder)))
    GTEST_SKIP() << c.folder << " is absent: run scripts/get-smollm2.sh (then ctest remakes the oracle)";
  const std::filesystem::path folder =
      c.folder.rfind("oracle:", 0) == 0 ? oracle_dir() / c.folder.substr(7) : source_path(c.folder);
  const auto tokenizer = tokenizer::Tokenizer::from_directory(folder);
  for (const char* dataset : {"wikitext2", "ptb"}) {
    const auto ids = data::evaluation_ids(data::Dataset::parse(dataset), *tokenizer, source_path("data"), 2048);
    const auto expected = oracle_ids(c.name + "/" + dataset);
    ASSERT_EQ(ids.size(), expected.size()) << c.name << " on " << dataset;
    size_t first_difference = 0;
    while (first_difference < ids.size() && ids[first_difference] == expected[first_difference]) ++first_difference;
    EXPECT_EQ(first_difference, ids.size()) << c.name << " on " << dataset << ": ids differ first at "
                                            << first_difference;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Tokenizers, TokenIdsOracle,
    ::testing::Values(TokenCase{"opt", "tests/data/tokenizers/opt"}, TokenCase{"gpt2", "tests/data/tokenizers/gpt2"},
                      TokenCase{"llama", "tests/data/tokenizers/llama"}, TokenCase{"stories260K", "data/stories260K"},
                      TokenCase{"gpt2_json", "oracle:gpt2_json"}, TokenCase{"gpt2_json_digits", "oracle:gpt2_json_digits"},
                      TokenCase{"SmolLM2-135M", "models/SmolLM2-135M"}),
    [](const auto& info) {
      std::string name = info.param.name;
      std::replace(name.begin(), name.end(), '-', '_');
      return name;
    });

TEST(SamplerOracle, WindowStartsEqualPythonRandom) {
  const io::SafetensorsFile file((oracle_dir() / "token_ids.safetensors").string());
  int checked = 0;
  for (const std::string& key : file.names()) {
    if (key.rfind("windows/", 0) != 0) continue;
    uint64_t seed = 0;
    long long count = 0, seqlen = 0;
    ASSERT_EQ(std::sscanf(key.c_str(), "windows/%lu/%lld/%lld", &seed, &count, &seqlen), 3) << key;
    const at::Tensor expected = file.tensor(key);
    data::PythonRandom random(seed);
    for (int64_t i = 0; i < expected.numel(); ++i)
      ASSERT_EQ(random.randint(0, count - seqlen - 1), expected[i].item<int64_t>()) << key << " draw " << i;
    // sample_windows draws the same starts.
    std::vector<int32_t> ids(count);
    for (long long i = 0; i < count; ++i) ids[i] = static_cast<int32_t>(i);
    const auto windows = data::sample_windows(ids, 3, seed, seqlen);
    for (int64_t i = 0; i < 3; ++i) EXPECT_EQ(windows[i][0], expected[i].item<int64_t>());
    ++checked;
  }
  EXPECT_EQ(checked, 20);
}

TEST(PerplexityOracle, Stories260KOnWikitext2AndPtbEqualsTransformers) {
  const nlohmann::json expected = io::read_json_file(oracle_dir() / "perplexity.json");
  const auto checkpoint = io::Checkpoint::open(source_path("data/stories260K").string());
  const auto model = model::DecoderModel::load(checkpoint, at::kCPU);
  const auto tokenizer = tokenizer::Tokenizer::from_directory(checkpoint.dir());
  eval::EvaluationOptions options;
  options.datasets = {"wikitext2", "ptb"};
  options.data_dir = source_path("data");
  options.seqlen = 512;
  for (const auto& result : eval::evaluate_datasets(*model, *tokenizer, options)) {
    const nlohmann::json& reference = expected[result.dataset];
    EXPECT_EQ(result.result.tokens, reference["tokens"].get<int64_t>()) << result.dataset;
    EXPECT_EQ(result.result.windows, reference["windows"].get<int64_t>()) << result.dataset;
    const double perplexity = reference["perplexity"].get<double>();
    EXPECT_NEAR(result.result.perplexity, perplexity, 1e-4 * perplexity) << result.dataset;
  }
}

}  // namespace
}  // namespace pbllm
