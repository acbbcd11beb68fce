// Writing a Hugging Face checkpoint folder that transformers and pbllm load
// as they are: config.json and the tokenizer files copied from the source
// folder, the tensors in model.safetensors, plus extra files (report.json).
// The folder is written with write_folder_atomically (io/output_folder.h).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "pbllm/io/safetensors.h"

namespace pbllm::io {

// The files besides the weights that make a folder loadable by transformers.
inline constexpr const char* kCopiedModelFiles[] = {
    "config.json",           "generation_config.json", "tokenizer.json",    "tokenizer.model",
    "tokenizer_config.json", "special_tokens_map.json", "vocab.json",       "merges.txt",
    "added_tokens.json",     "chat_template.jinja"};

// Copies those of kCopiedModelFiles that `source` has into `folder`.
void copy_model_side_files(const std::filesystem::path& source, const std::filesystem::path& folder);
// Writes `text` to `path`, checking the write.
void write_text_file(const std::filesystem::path& path, const std::string& text);

// A model folder: the source's side files, the weights file(s) `write_weights`
// writes into the folder it is given, then `extra_files` (name -> text).
void save_model_directory(const std::filesystem::path& source, const std::filesystem::path& dir,
                          const std::function<void(const std::filesystem::path& folder)>& write_weights,
                          const std::map<std::string, std::string>& extra_files);
// The fake-quant Hugging Face folder: `tensors` in model.safetensors.
void save_hf_directory(const std::filesystem::path& source, const std::filesystem::path& dir,
                       const NamedTensors& tensors, const std::map<std::string, std::string>& extra_files);

}  // namespace pbllm::io
