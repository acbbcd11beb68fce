// Output folders that never destroy a user's files (docs/DESIGN.md, "Outputs").
//
// check_output_folder runs before any work, so a bad --save fails in a second,
// not after an hour of quantization: it refuses a destination that is a file,
// that is (through ".", a trailing slash or a symlink) or contains the source
// model, and a non-empty folder that is not an earlier pbllm output unless the
// user asked to overwrite it.
//
// write_folder_atomically builds the folder under "<dir>.tmp.<pid>" and puts
// it in place with one atomic exchange, so a kill at any moment leaves either
// the old folder or the new one under the final name, never half of one. The
// temporary is removed on errors and on SIGINT / SIGTERM (checked between
// files); one left by a killed run is removed by the next run that writes there.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace pbllm::io {

// Names a pbllm output folder may hold; any other file makes it "not ours".
bool is_pbllm_output_file(const std::string& name);

// Throws pbllm::Error naming `flag` (e.g. "--save") and the problem.
// `other_inputs`: more files or folders the run reads (e.g. pbllm-qat's
// --masks), which the folder must neither be nor contain. A folder inside a
// pbllm state folder ("*.pbllm-state") is refused too.
void check_output_folder(const std::filesystem::path& dir, const std::filesystem::path& model_dir, bool overwrite,
                         const std::string& flag, const std::vector<std::filesystem::path>& other_inputs = {});

// The same for a file a tool writes (--json FILE), replaced atomically: an
// existing regular file may be replaced (the user named it); a folder, a
// symbolic link, a FIFO or a device is refused, and so is a file inside the
// model folder.
// `others`: files and folders of the run (its inputs, its output folder)
// that the file must neither be nor be inside.
void check_output_file(const std::filesystem::path& file, const std::filesystem::path& model_dir,
                       const std::string& flag, const std::vector<std::filesystem::path>& others = {});

// `fill` writes the folder's files into the temporary folder it is given.
void write_folder_atomically(const std::filesystem::path& dir,
                             const std::function<void(const std::filesystem::path& temporary)>& fill);

}  // namespace pbllm::io
