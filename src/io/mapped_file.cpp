#include "pbllm/io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>

#include "pbllm/core/check.h"

namespace pbllm::io {
namespace {

// The live mappings (start -> end), so that page_out touches only them.
std::mutex mappings_mutex;
// Never destroyed: a MappedFile held by a static may outlive any static map.
std::map<uintptr_t, uintptr_t>& live_mappings() {
  static auto* mappings = new std::map<uintptr_t, uintptr_t>;
  return *mappings;
}

}  // namespace

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
    const std::lock_guard<std::mutex> lock(mappings_mutex);
    live_mappings()[reinterpret_cast<uintptr_t>(data)] = reinterpret_cast<uintptr_t>(data) + size;
  } else {
    ::close(fd);
  }
  return std::shared_ptr<MappedFile>(new MappedFile(path, data, size));
}

MappedFile::~MappedFile() {
  if (data_ == nullptr) return;
  {
    const std::lock_guard<std::mutex> lock(mappings_mutex);
    live_mappings().erase(reinterpret_cast<uintptr_t>(data_));
  }
  ::munmap(data_, size_);
}

size_t MappedFile::page_out(const void* begin, size_t bytes) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGE_SIZE));
  const auto first = reinterpret_cast<uintptr_t>(begin), last = first + bytes;
  const uintptr_t aligned_first = (first + page - 1) / page * page, aligned_last = last / page * page;
  if (aligned_first >= aligned_last) return 0;
  // Held through madvise: the mapping cannot be unmapped (and its addresses
  // reused) in between.
  const std::lock_guard<std::mutex> lock(mappings_mutex);
  auto after = live_mappings().upper_bound(first);
  if (after == live_mappings().begin()) return 0;
  if (last > std::prev(after)->second) return 0;  // its start is at or before `first`
#ifdef MADV_PAGEOUT
  if (::madvise(reinterpret_cast<void*>(aligned_first), aligned_last - aligned_first, MADV_PAGEOUT) == 0)
    return aligned_last - aligned_first;
#endif
  return 0;
}

}  // namespace pbllm::io
