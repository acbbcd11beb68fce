#include "pbllm/io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "pbllm/core/check.h"

namespace pbllm::io {

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer
  // before fstat could refuse it (no effect on a regular file's reads).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  PBLLM_CHECK(fd >= 0, path, ": cannot open (", std::strerror(errno), ")");
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    throw Error(str_cat(path, ": not a regular file"));
  }
  const size_t size = static_cast<size_t>(info.st_size);
  uint8_t* data = nullptr;
  if (size > 0) {  // mmap rejects length 0; an empty file maps to nothing
    void* mapped = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    const int mmap_errno = errno;
    ::close(fd);
    PBLLM_CHECK(mapped != MAP_FAILED, path, ": cannot map (", std::strerror(mmap_errno), ")");
    data = static_cast<uint8_t*>(mapped);
  } else {
    ::close(fd);
  }
  return std::shared_ptr<MappedFile>(new MappedFile(path, data, size));
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

}  // namespace pbllm::io
