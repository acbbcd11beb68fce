// Dataset files the machine does not have (wiki.train.raw, the c4 shards)
// made small in the same formats: join rules, the c4 draw, the errors.
#include <nlohmann/json.hpp>
#include <zlib.h>

#include <fstream>

#include "pbllm/data/datasets.h"
#include "pbllm/data/python_random.h"
#include "pbllm/io/sha256.h"
#include "pbllm/tokenizer/tokenizer.h"
#include "test_support.h"

namespace pbllm::data {
namespace {

using pbllm::testing::ScratchDir;
using pbllm::testing::source_path;

void write_gzip_lines(const std::filesystem::path& path, const std::vector<std::string>& lines) {
  std::filesystem::create_directories(path.parent_path());
  gzFile file = gzopen(path.c_str(), "wb");
  for (const std::string& line : lines) gzwrite(file, line.data(), static_cast<unsigned>(line.size()));
  gzclose(file);
}

// Documents of 5 to 200 words: some shorter than the window, most longer.
std::vector<std::string> documents(int count) {
  std::vector<std::string> texts;
  for (int i = 0; i < count; ++i) {
    std::string text = "Document " + std::to_string(i) + ":";
    for (int word = 0; word < 5 + (i * 37) % 196; ++word) text += " word" + std::to_string((i + word) % 13);
    texts.push_back(text);
  }
  return texts;
}

std::vector<std::string> json_lines(const std::vector<std::string>& texts) {
  std::vector<std::string> lines;
  for (const std::string& text : texts) lines.push_back(nlohmann::json{{"text", text}, {"url", "x"}}.dump() + "\n");
  return lines;
}

TEST(Datasets, WikitextTestTextIsTheHuggingFaceJoin) {
  // data/README: "\n\n".join(test rows) is 1,296,370 bytes, sha256 696cca6b...dfae83.
  const std::string text = joined_text(Dataset::parse("wikitext2"), Split::evaluation, source_path("data"));
  EXPECT_EQ(text.size(), 1296370u);
  const std::string hash = io::sha256_hex(text);
  EXPECT_EQ(hash.substr(0, 8), "696cca6b");
  EXPECT_EQ(hash.substr(hash.size() - 6), "dfae83");
}

TEST(Datasets, WikitextTrainRowsJoinWithASpace) {
  ScratchDir dir;
  std::filesystem::create_directories(dir / "wikitext-2-raw");
  std::ofstream(dir / "wikitext-2-raw/wiki.train.raw") << " \n = Title = \n \n Text here .\n";
  EXPECT_EQ(joined_text(Dataset::parse("wikitext2"), Split::calibration, dir.path()),
            "  = Title = \n   Text here .\n");  // rows "", " = Title = \n", "", " Text here .\n"
}

TEST(Datasets, PtbSentencesAreStrippedAndJoinedWithASpace) {
  ScratchDir dir;
  std::filesystem::create_directories(dir / "ptb");
  std::ofstream(dir / "ptb/ptb.test.txt") << " a b <unk> \n c d \n";
  EXPECT_EQ(joined_text(Dataset::parse("ptb"), Split::evaluation, dir.path()), "a b <unk> c d");
}

TEST(Datasets, C4EvaluationJoinsThe1100FirstDocumentsAndCuts) {
  ScratchDir dir;
  const auto texts = documents(1200);
  write_gzip_lines(dir / "c4/c4-validation.00000-of-00008.json.gz", json_lines(texts));
  const auto tokenizer = tokenizer::Tokenizer::from_directory(source_path("data/stories260K"));
  std::string joined;
  for (int i = 0; i < 1100; ++i) joined += (i ? " " : "") + texts[i];
  const auto expected = tokenizer->encode(joined);
  const auto ids = evaluation_ids(Dataset::parse("c4"), *tokenizer, dir.path(), 64);
  ASSERT_EQ(ids.size(), 256u * 64);  // cut to 256 * seqlen
  EXPECT_TRUE(std::equal(ids.begin(), ids.end(), expected.begin()));
}

TEST(Datasets, C4CalibrationDrawsADocumentThenAWindowFromOneStream) {
  ScratchDir dir;
  const auto texts = documents(50);
  write_gzip_lines(dir / "c4/c4-train.00000-of-01024.json.gz", json_lines(texts));
  const auto tokenizer = tokenizer::Tokenizer::from_directory(source_path("data/stories260K"));
  const int64_t seqlen = 300;
  const auto windows = calibration_windows(Dataset::parse("c4"), *tokenizer, dir.path(), 6, 3, seqlen);
  // The reference's loop, replayed: random document until longer than seqlen, then a window.
  PythonRandom random(3);
  for (const auto& window : windows) {
    std::vector<int32_t> ids;
    do ids = tokenizer->encode(texts[random.randint(0, 49)]);
    while (static_cast<int64_t>(ids.size()) <= seqlen);
    const int64_t start = random.randint(0, static_cast<int64_t>(ids.size()) - seqlen - 1);
    EXPECT_EQ(window, std::vector<int32_t>(ids.begin() + start, ids.begin() + start + seqlen));
  }
}

TEST(Datasets, CorruptOrMissingFilesAreClearErrors) {
  ScratchDir dir;
  const auto tokenizer = tokenizer::Tokenizer::from_directory(source_path("data/stories260K"));
  EXPECT_ERROR_CONTAINS(evaluation_ids(Dataset::parse("c4"), *tokenizer, dir.path(), 64),
                        "c4-validation.00000-of-00008.json.gz is missing");
  write_gzip_lines(dir / "c4/c4-validation.00000-of-00008.json.gz", {"{\"text\": \"ok\"}\n", "not json\n"});
  EXPECT_ERROR_CONTAINS(evaluation_ids(Dataset::parse("c4"), *tokenizer, dir.path(), 64), "line 2 is not a JSON object");
  std::ofstream(dir / "c4/c4-validation.00000-of-00008.json.gz", std::ios::binary) << "\x1f\x8b\x08\x00garbage";
  EXPECT_ERROR_CONTAINS(evaluation_ids(Dataset::parse("c4"), *tokenizer, dir.path(), 64), "corrupt gzip");
  EXPECT_ERROR_CONTAINS(Dataset::parse("c5"), "unknown dataset 'c5'");
  EXPECT_ERROR_CONTAINS(sample_windows({1, 2, 3}, 1, 0, 3), "need more");
}

}  // namespace
}  // namespace pbllm::data
