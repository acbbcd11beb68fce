#include "pbllm/io/hf_export.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "pbllm/core/check.h"
#include "pbllm/core/interrupt.h"
#include "pbllm/io/output_folder.h"

namespace pbllm::io {
namespace fs = std::filesystem;

void copy_model_side_files(const fs::path& source, const fs::path& folder) {
  for (const char* name : kCopiedModelFiles) {
    if (fs::exists(source / name)) fs::copy_file(source / name, folder / name);
    check_interrupted();
  }
}

void write_text_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  PBLLM_CHECK(out.good(), path.string(), ": cannot create (", std::strerror(errno), ")");
  out << text;
  out.flush();
  PBLLM_CHECK(out.good(), path.string(), ": write failed (disk full?)");
}

void save_model_directory(const fs::path& source, const fs::path& dir,
                          const std::function<void(const fs::path& folder)>& write_weights,
                          const std::map<std::string, std::string>& extra_files) {
  write_folder_atomically(dir, [&](const fs::path& folder) {
    copy_model_side_files(source, folder);
    write_weights(folder);
    for (const auto& [name, text] : extra_files) write_text_file(folder / name, text);
  });
}

void save_hf_directory(const fs::path& source, const fs::path& dir, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& extra_files) {
  save_model_directory(
      source, dir,
      [&](const fs::path& folder) {
        save_safetensors((folder / "model.safetensors").string(), tensors, {{"format", "pt"}});
      },
      extra_files);
}

}  // namespace pbllm::io
