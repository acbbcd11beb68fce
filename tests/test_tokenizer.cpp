// Tokenizers against llama.cpp's test vectors (ids without special tokens),
// special-token handling, decoding, and malformed tokenizer files.
#include <fstream>
#include <iterator>
#include <sstream>

#include "pbllm/tokenizer/byte_level_bpe.h"
#include "pbllm/tokenizer/sentencepiece.h"
#include "pbllm/tokenizer/tokenizer.h"
#include "test_support.h"

namespace pbllm::tokenizer {
namespace {

using pbllm::testing::ScratchDir;
using pbllm::testing::source_path;

std::string read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::unique_ptr<Tokenizer> load(const std::string& name) {
  return Tokenizer::from_directory(source_path("tests/data/tokenizers/" + name));
}

struct VectorCase {
  std::string tokenizer_dir;
  std::string vectors;  // tests/data/tokenizers/testvectors/ggml-vocab-<name>.gguf.{inp,out}
};

std::ostream& operator<<(std::ostream& out, const VectorCase& c) { return out << c.tokenizer_dir; }

class TestVectors : public ::testing::TestWithParam<VectorCase> {};

TEST_P(TestVectors, EveryInputGivesTheExpectedIds) {
  const auto tokenizer = load(GetParam().tokenizer_dir);
  const std::string base = "tests/data/tokenizers/testvectors/ggml-vocab-" + GetParam().vectors + ".gguf.";
  const std::string inputs = read_all(source_path(base + "inp"));
  std::istringstream outputs(read_all(source_path(base + "out")));
  const std::string separator = "\n__ggml_vocab_test__\n";
  size_t start = 0, cases = 0;
  while (start < inputs.size()) {  // the file ends with a separator
    const size_t end = std::min(inputs.find(separator, start), inputs.size());
    const std::string text = inputs.substr(start, end - start);
    std::string line;
    ASSERT_TRUE(std::getline(outputs, line)) << "no expected ids for input " << cases;
    std::istringstream numbers(line);
    std::vector<int32_t> expected{std::istream_iterator<int32_t>(numbers), std::istream_iterator<int32_t>()};
    EXPECT_EQ(tokenizer->encode_without_bos(text), expected) << "input " << cases << ": \"" << text << "\"";
    ++cases;
    start = end + separator.size();
  }
  EXPECT_GE(cases, 40u);
}

INSTANTIATE_TEST_SUITE_P(LlamaCpp, TestVectors,
                         ::testing::Values(VectorCase{"gpt2", "gpt-2"}, VectorCase{"opt", "roberta-bpe"},
                                           VectorCase{"llama", "llama-spm"}),
                         [](const auto& info) { return info.param.tokenizer_dir; });

TEST(Tokenizer, OptPrependsEosAndMatchesSpecialTokensInRawText) {
  const auto opt = load("opt");
  ASSERT_TRUE(opt->bos_id().has_value());
  EXPECT_EQ(*opt->bos_id(), 2);  // </s>, as OPT's GPT2Tokenizer with add_bos_token
  const auto ids = opt->encode("a <unk> b");
  ASSERT_EQ(ids.size(), 5u);
  EXPECT_EQ(ids[0], 2);
  // The spaces around the special token stay with the text beside it.
  EXPECT_EQ(ids, (std::vector<int32_t>{2, opt->token_id("a"), opt->token_id("\xC4\xA0"), 3, opt->token_id("\xC4\xA0" "b")}));
}

TEST(Tokenizer, LlamaPrependsBosAndEncodesEachStretchWithItsOwnPrefix) {
  const auto llama = load("llama");
  EXPECT_EQ(llama->bos_id().value_or(-1), 1);
  const auto whole = llama->encode("hello <unk> world");
  const auto left = llama->encode_without_bos("hello ");
  const auto right = llama->encode_without_bos(" world");
  std::vector<int32_t> expected = {1};
  expected.insert(expected.end(), left.begin(), left.end());
  expected.push_back(0);
  expected.insert(expected.end(), right.begin(), right.end());
  EXPECT_EQ(whole, expected);
}

TEST(Tokenizer, DecodeInvertsEncode) {
  const std::string text = "Hello world, it's 2026!\n  Ünïcödé ½ 日本語 \xF0\x9F\xA6\x99";
  for (const char* name : {"gpt2", "opt", "llama"}) {
    const auto tokenizer = load(name);
    EXPECT_EQ(tokenizer->decode(tokenizer->encode_without_bos(text)), text) << name;
  }
}

TEST(Tokenizer, StoriesTokenizerGivesTheReferenceIds) {
  // The reference's ids for story 1 were made by llama2.c's encoder, which
  // agrees with sentencepiece on this text.
  const auto tokenizer = Tokenizer::from_directory(source_path("data/stories260K"));
  const auto ids = tokenizer->encode("Once upon a time");
  EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + 4), (std::vector<int32_t>{1, 403, 407, 261}));
}

TEST(Tokenizer, NoTokenizerFilesIsAClearError) {
  ScratchDir dir;
  EXPECT_ERROR_CONTAINS(Tokenizer::from_directory(dir.path()), "no tokenizer (looked for tokenizer.model");
}

TEST(Tokenizer, TruncatedSentencePieceModel) {
  ScratchDir dir;
  const std::string bytes = read_all(source_path("tests/data/tokenizers/llama/tokenizer.model"));
  std::ofstream(dir / "tokenizer.model", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  EXPECT_ERROR_CONTAINS(Tokenizer::from_directory(dir.path()), "truncated protobuf");
}

TEST(Tokenizer, BadMergesLine) {
  ScratchDir dir;
  std::ofstream(dir / "vocab.json") << R"({"a": 0, "b": 1, "ab": 2})";
  std::ofstream(dir / "merges.txt") << "#version: 0.2\na b\nab\n";
  EXPECT_ERROR_CONTAINS(Tokenizer::from_directory(dir.path()), "line 2 is not 'left right'");
}

}  // namespace
}  // namespace pbllm::tokenizer
