#include "pbllm/data/datasets.h"

#include <nlohmann/json.hpp>
#include <zlib.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "pbllm/core/check.h"
#include "pbllm/data/python_random.h"

namespace pbllm::data {
namespace fs = std::filesystem;

namespace {

constexpr size_t kC4EvaluationDocuments = 1100;
constexpr int64_t kC4EvaluationWindows = 256;

struct KnownFile {
  DatasetKind kind;
  Split split;
  const char* relative;
  const char* where;  // how a user gets it
};

constexpr KnownFile kFiles[] = {
    {DatasetKind::wikitext2, Split::calibration, "wikitext-2-raw/wiki.train.raw",
     "WikiText-2 raw v1 train split (10,940,747 bytes), from the wikitext-2-raw-v1 archive or Hugging Face "
     "'wikitext'"},
    {DatasetKind::wikitext2, Split::evaluation, "wikitext-2-raw/wiki.test.raw",
     "WikiText-2 raw v1 test split (1,290,590 bytes; bundled in data/)"},
    {DatasetKind::ptb, Split::calibration, "ptb/ptb.train.txt", "Penn Treebank train (Mikolov's ptb.train.txt; bundled in data/)"},
    {DatasetKind::ptb, Split::evaluation, "ptb/ptb.test.txt", "Penn Treebank test (Mikolov's ptb.test.txt; bundled in data/)"},
    {DatasetKind::c4, Split::calibration, "c4/c4-train.00000-of-01024.json.gz",
     "allenai/c4 en/c4-train.00000-of-01024.json.gz from Hugging Face"},
    {DatasetKind::c4, Split::evaluation, "c4/c4-validation.00000-of-00008.json.gz",
     "allenai/c4 en/c4-validation.00000-of-00008.json.gz from Hugging Face"},
};

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  PBLLM_CHECK(in.good(), path.string(), ": cannot open");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Hugging Face's wikitext rows: every line with its newline; " \n" is an empty row.
std::vector<std::string> wikitext_rows(const std::string& text) {
  std::vector<std::string> rows;
  for (size_t start = 0; start < text.size();) {
    const size_t newline = text.find('\n', start);
    const size_t end = newline == std::string::npos ? text.size() : newline + 1;
    std::string row = text.substr(start, end - start);
    rows.push_back(row == " \n" ? std::string() : std::move(row));
    start = end;
  }
  return rows;
}

// Python's str.strip(): ASCII whitespace at both ends.
std::string strip(const std::string& line) {
  const char* space = " \t\n\r\f\v";
  const size_t first = line.find_first_not_of(space);
  if (first == std::string::npos) return "";
  return line.substr(first, line.find_last_not_of(space) - first + 1);
}

std::vector<std::string> ptb_sentences(const std::string& text) {
  std::vector<std::string> sentences;
  for (size_t start = 0; start < text.size();) {
    const size_t newline = text.find('\n', start);
    const size_t end = newline == std::string::npos ? text.size() : newline;
    sentences.push_back(strip(text.substr(start, end - start)));
    start = end + 1;
  }
  return sentences;
}

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string joined;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) joined += separator;
    joined += parts[i];
  }
  return joined;
}

}  // namespace

Dataset Dataset::parse(const std::string& name) {
  if (name == "wikitext2") return {DatasetKind::wikitext2, name, {}};
  if (name == "ptb") return {DatasetKind::ptb, name, {}};
  if (name == "c4") return {DatasetKind::c4, name, {}};
  if (name.rfind("text:", 0) == 0 && name.size() > 5) return {DatasetKind::text, name, name.substr(5)};
  throw Error(str_cat("unknown dataset '", name, "' (wikitext2, ptb, c4 or text:PATH)"));
}

fs::path default_data_dir() {
  if (const char* env = std::getenv("PBLLM_DATA"); env && *env) return env;
  std::error_code error;
  const fs::path executable = fs::read_symlink("/proc/self/exe", error);
  // Installed (cmake --install): <prefix>/bin/pbllm-* beside <prefix>/share/pbllm/data, wherever
  // the prefix was moved; else the source tree the build ran in, while it is there.
  const std::vector<fs::path> candidates = {
      error ? fs::path() : (executable.parent_path().parent_path() / kInstalledDataDir).lexically_normal(),
      PBLLM_SOURCE_DATA_DIR};
  for (const fs::path& candidate : candidates)
    if (!candidate.empty() && fs::is_directory(candidate)) return candidate;
  // Neither: the source tree's path, which a dataset's "missing" error names with how to point elsewhere
  // (text:PATH never needs the folder).
  return PBLLM_SOURCE_DATA_DIR;
}

fs::path dataset_file(const Dataset& dataset, Split split, const fs::path& data_dir) {
  if (dataset.kind == DatasetKind::text) {
    PBLLM_CHECK(fs::is_regular_file(dataset.path), dataset.name, ": ", dataset.path.string(), " is not a file");
    return dataset.path;
  }
  for (const KnownFile& file : kFiles) {
    if (file.kind != dataset.kind || file.split != split) continue;
    const fs::path path = data_dir / file.relative;
    PBLLM_CHECK(fs::is_regular_file(path), dataset.name, ": ", path.string(), " is missing: it is the ", file.where,
                "; put it there or point --data-dir / $PBLLM_DATA at a folder that has ", file.relative);
    return path;
  }
  throw Error(str_cat("no file for dataset ", dataset.name));
}

std::string joined_text(const Dataset& dataset, Split split, const fs::path& data_dir) {
  const fs::path path = dataset_file(dataset, split, data_dir);
  switch (dataset.kind) {
    case DatasetKind::wikitext2:
      return join(wikitext_rows(read_file(path)), split == Split::calibration ? " " : "\n\n");
    case DatasetKind::ptb:
      return join(ptb_sentences(read_file(path)), " ");
    case DatasetKind::text:
      return read_file(path);
    case DatasetKind::c4:
      break;
  }
  throw Error("c4 has no single joined text: use read_c4_documents");
}

namespace {

// Opens a gzip file for reading; an empty, corrupt or uncompressed one (zlib
// would read it as it is, and its first line would be reported as bad JSON)
// is an error naming it.
gzFile open_gzip(const fs::path& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  PBLLM_CHECK(file != nullptr, path.string(), ": cannot open");
  gzbuffer(file, 1 << 20);
  char first = 0;
  const int read = gzread(file, &first, 1);
  int code = Z_OK;
  const std::string message = gzerror(file, &code);
  const bool corrupt = read < 0 || (code != Z_OK && code != Z_STREAM_END);
  const bool plain = read > 0 && gzdirect(file);
  if (read > 0 && !corrupt && !plain && gzrewind(file) == 0) return file;
  gzclose(file);
  throw Error(str_cat(path.string(), corrupt ? ": corrupt gzip data (" + message + ")"
                                     : plain ? ": not gzip data (c4 files are gzip'd JSON lines)"
                                             : ": no data"));
}

}  // namespace

std::vector<std::string> read_c4_documents(const fs::path& path, size_t limit) {
  gzFile file = open_gzip(path);
  std::vector<std::string> documents;
  std::string line;
  char chunk[1 << 16];
  size_t line_number = 0;
  auto take_line = [&] {
    ++line_number;
    if (line.empty()) return;
    try {
      const nlohmann::json record = nlohmann::json::parse(line);
      documents.push_back(record.at("text").get<std::string>());
    } catch (const nlohmann::json::exception& error) {
      gzclose(file);
      throw Error(str_cat(path.string(), ": line ", line_number, " is not a JSON object with a \"text\" string (",
                          error.what(), ")"));
    }
    line.clear();
  };
  while (documents.size() < limit && gzgets(file, chunk, sizeof chunk) != nullptr) {
    line += chunk;
    if (!line.empty() && line.back() == '\n') take_line();
  }
  int error_code = 0;
  const char* message = gzerror(file, &error_code);
  const bool failed = error_code != Z_OK && error_code != Z_STREAM_END;
  const std::string error_text = failed ? message : "";
  if (!failed && documents.size() < limit) take_line();
  gzclose(file);
  PBLLM_CHECK(!failed, path.string(), ": corrupt gzip data (", error_text, ")");
  return documents;
}

std::vector<int32_t> evaluation_ids(const Dataset& dataset, const tokenizer::Tokenizer& tokenizer,
                                    const fs::path& data_dir, int64_t seqlen) {
  if (dataset.kind != DatasetKind::c4) return tokenizer.encode(joined_text(dataset, Split::evaluation, data_dir));
  const auto documents = read_c4_documents(dataset_file(dataset, Split::evaluation, data_dir), kC4EvaluationDocuments);
  std::vector<int32_t> ids = tokenizer.encode(join(documents, " "));
  if (static_cast<int64_t>(ids.size()) > kC4EvaluationWindows * seqlen) ids.resize(kC4EvaluationWindows * seqlen);
  return ids;
}

std::vector<std::vector<int32_t>> sample_windows(const std::vector<int32_t>& ids, int64_t nsamples, uint64_t seed,
                                                 int64_t seqlen) {
  const auto count = static_cast<int64_t>(ids.size());
  PBLLM_CHECK(count > seqlen, "the calibration text has ", count, " tokens; windows of ", seqlen,
              " need more (lower --seqlen or use a longer text)");
  PythonRandom random(seed);
  std::vector<std::vector<int32_t>> windows;
  for (int64_t sample = 0; sample < nsamples; ++sample) {
    const int64_t start = random.randint(0, count - seqlen - 1);
    windows.emplace_back(ids.begin() + start, ids.begin() + start + seqlen);
  }
  return windows;
}

std::vector<std::vector<int32_t>> calibration_windows(const Dataset& dataset, const tokenizer::Tokenizer& tokenizer,
                                                      const fs::path& data_dir, int64_t nsamples, uint64_t seed,
                                                      int64_t seqlen) {
  if (dataset.kind != DatasetKind::c4)
    return sample_windows(tokenizer.encode(joined_text(dataset, Split::calibration, data_dir)), nsamples, seed, seqlen);
  // c4: a random document per sample, tokenized alone, until one is longer
  // than seqlen; then a random window inside it, from the same stream.
  const auto documents = read_c4_documents(dataset_file(dataset, Split::calibration, data_dir));
  PBLLM_CHECK(!documents.empty(), dataset.name, ": the calibration file has no documents");
  PythonRandom random(seed);
  std::vector<std::vector<int32_t>> windows;
  constexpr int kMaxDraws = 100000;  // a shard where no document is long enough must not loop forever
  for (int64_t sample = 0; sample < nsamples; ++sample) {
    std::vector<int32_t> ids;
    for (int draw = 0;; ++draw) {
      PBLLM_CHECK(draw < kMaxDraws, dataset.name, ": no document longer than ", seqlen, " tokens after ", kMaxDraws,
                  " draws");
      ids = tokenizer.encode(documents[random.randint(0, static_cast<int64_t>(documents.size()) - 1)]);
      if (static_cast<int64_t>(ids.size()) > seqlen) break;
    }
    const int64_t start = random.randint(0, static_cast<int64_t>(ids.size()) - seqlen - 1);
    windows.emplace_back(ids.begin() + start, ids.begin() + start + seqlen);
  }
  return windows;
}

}  // namespace pbllm::data
