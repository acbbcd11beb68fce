#include "pbllm/io/hf_export.h"

#include <unistd.h>

#include <fstream>

#include "pbllm/core/check.h"

namespace pbllm::io {
namespace fs = std::filesystem;

namespace {

// The files besides the weights that make a folder loadable by transformers.
constexpr const char* kCopiedFiles[] = {"config.json",      "generation_config.json", "tokenizer.json",
                                         "tokenizer.model",  "tokenizer_config.json",  "special_tokens_map.json",
                                         "vocab.json",       "merges.txt",             "added_tokens.json",
                                         "chat_template.jinja"};

}  // namespace

void save_hf_directory(const fs::path& source, const fs::path& dir, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& extra_files) {
  PBLLM_CHECK(!dir.empty(), "--save needs a folder");
  const fs::path absolute = fs::absolute(dir);
  PBLLM_CHECK(fs::absolute(source) != absolute, "--save ", dir.string(), " would overwrite the model being quantized");
  const fs::path temporary = str_cat(absolute.string(), ".tmp.", ::getpid());
  std::error_code error;
  fs::remove_all(temporary, error);
  try {
    fs::create_directories(temporary);
    for (const char* name : kCopiedFiles)
      if (fs::exists(source / name)) fs::copy_file(source / name, temporary / name);
    save_safetensors((temporary / "model.safetensors").string(), tensors, {{"format", "pt"}});
    for (const auto& [name, text] : extra_files) {
      std::ofstream out(temporary / name, std::ios::binary);
      out << text;
      PBLLM_CHECK(out.good(), (temporary / name).string(), ": write failed");
    }
    // Replace an earlier result only once the new one is complete.
    const fs::path previous = str_cat(absolute.string(), ".old.", ::getpid());
    if (fs::exists(absolute)) fs::rename(absolute, previous);
    fs::rename(temporary, absolute);
    fs::remove_all(previous, error);
  } catch (const fs::filesystem_error& failure) {
    fs::remove_all(temporary, error);
    throw Error(str_cat("cannot write ", dir.string(), ": ", failure.what()));
  } catch (...) {
    fs::remove_all(temporary, error);
    throw;
  }
}

}  // namespace pbllm::io
