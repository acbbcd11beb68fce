// The reference's datasets: which files, how their rows are joined into one
// text, the evaluation token ids and the calibration windows.
//   wikitext2: wikitext-2-raw/wiki.{train,test}.raw; rows are the lines with
//              their newline (" \n" lines become empty rows); calibration joins
//              train rows with " ", evaluation joins test rows with "\n\n".
//   ptb:       ptb/ptb.{train,test}.txt; stripped lines joined with " ".
//   c4:        c4/c4-{train.00000-of-01024,validation.00000-of-00008}.json.gz;
//              calibration draws a document per sample until one is longer
//              than seqlen tokens; evaluation joins the first 1100 validation
//              documents with " " and keeps 256 * seqlen tokens.
//   text:PATH: the file as it is, for both.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "pbllm/tokenizer/tokenizer.h"

namespace pbllm::data {

enum class DatasetKind { wikitext2, ptb, c4, text };
enum class Split { calibration, evaluation };

struct Dataset {
  DatasetKind kind;
  std::string name;            // as given: "wikitext2", "ptb", "c4", "text:PATH"
  std::filesystem::path path;  // the file of text:PATH

  // Unknown names list the choices.
  static Dataset parse(const std::string& name);
};

// Where `cmake --install` puts the bundled data, under the prefix.
inline constexpr const char* kInstalledDataDir = "share/pbllm/data";

// $PBLLM_DATA when set; else <prefix>/share/pbllm/data beside an installed
// executable's <prefix>/bin; else the bundled data/ of the source tree the
// build ran in (also when it is gone: the missing dataset file is the error).
std::filesystem::path default_data_dir();

// The file a dataset reads for a split. Missing: an error naming the file,
// its size when official, and where users get it.
std::filesystem::path dataset_file(const Dataset& dataset, Split split, const std::filesystem::path& data_dir);

// The whole text of a split joined as the reference joins it (not c4).
std::string joined_text(const Dataset& dataset, Split split, const std::filesystem::path& data_dir);

// The "text" fields of a gzip'd JSON-lines file, at most `limit` of them.
std::vector<std::string> read_c4_documents(const std::filesystem::path& path, size_t limit = SIZE_MAX);

// Evaluation token ids, BOS included, as the reference builds them.
std::vector<int32_t> evaluation_ids(const Dataset& dataset, const tokenizer::Tokenizer& tokenizer,
                                    const std::filesystem::path& data_dir, int64_t seqlen);

// `nsamples` windows of `seqlen` ids drawn as the reference draws them after
// random.seed(seed): start = random.randint(0, n - seqlen - 1).
std::vector<std::vector<int32_t>> calibration_windows(const Dataset& dataset, const tokenizer::Tokenizer& tokenizer,
                                                      const std::filesystem::path& data_dir, int64_t nsamples,
                                                      uint64_t seed, int64_t seqlen);

// The same draw over an already tokenized text (wikitext2, ptb, text).
std::vector<std::vector<int32_t>> sample_windows(const std::vector<int32_t>& ids, int64_t nsamples, uint64_t seed,
                                                 int64_t seqlen);

}  // namespace pbllm::data
