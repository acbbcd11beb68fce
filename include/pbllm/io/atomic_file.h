// Files are written under a temporary name in the destination folder, flushed
// to disk and renamed, so an interrupted run never leaves a half-written file
// under the final name.
#pragma once

#include <functional>
#include <ostream>
#include <string>

namespace pbllm::io {

// Calls `write` with a stream on "<path>.tmp.<pid>", then fsyncs and renames it
// to `path`. On any failure the temporary is removed and pbllm::Error thrown.
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);

}  // namespace pbllm::io
