#include "pbllm/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "pbllm/core/check.h"

namespace pbllm::io {
namespace {

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;  // the data is written; durability is best effort
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  const std::string temporary = str_cat(path, ".tmp.", ::getpid());
  try {
    {
      std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
      PBLLM_CHECK(out.good(), temporary, ": cannot create (", std::strerror(errno), ")");
      write(out);
      out.flush();
      PBLLM_CHECK(out.good(), temporary, ": write failed (disk full?)");
    }
    fsync_path(temporary);
    PBLLM_CHECK(std::rename(temporary.c_str(), path.c_str()) == 0, "cannot rename ", temporary, " to ", path,
                " (", std::strerror(errno), ")");
  } catch (...) {
    std::remove(temporary.c_str());
    throw;
  }
}

}  // namespace pbllm::io
