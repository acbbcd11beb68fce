// MappedFile::page_out: the resident pages of a tensor no longer needed are
// given back, and nothing is ever lost by it.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <vector>

#include "pbllm/io/mapped_file.h"
#include "test_support.h"

namespace pbllm::io {
namespace {

using pbllm::testing::ScratchDir;

// Resident kB of the mapping that starts at `start`, from /proc/self/smaps.
int64_t resident_kib(const void* start) {
  std::ifstream smaps("/proc/self/smaps");
  char prefix[32];
  std::snprintf(prefix, sizeof prefix, "%lx-", reinterpret_cast<unsigned long>(start));
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    if (line.rfind(prefix, 0) == 0) {  // the mapping's header line; its fields follow
      inside = true;
    } else if (inside && line.rfind("Rss:", 0) == 0) {
      return std::stoll(line.substr(4));
    }
  }
  ADD_FAILURE() << "no mapping at " << start << " in /proc/self/smaps";
  return -1;
}

// Written and flushed to disk: dirty page cache could not be dropped at once
// (a model file being read is clean).
void write_synced(const std::filesystem::path& path, const std::vector<uint8_t>& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  ASSERT_EQ(::fsync(fd), 0);
  ::close(fd);
}

TEST(MappedFile, PageOutGivesBackTheRangeAndLosesNothing) {
  ScratchDir dir;
  struct statfs where {};
  ASSERT_EQ(::statfs(dir.path().c_str(), &where), 0);
  // tmpfs pages are shared memory: without swap they have nowhere to go.
  if (where.f_type == TMPFS_MAGIC) GTEST_SKIP() << dir.path() << " is on tmpfs";
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGE_SIZE));
  const size_t size = 256 * page;
  std::vector<uint8_t> contents(size);
  for (size_t i = 0; i < size; ++i) contents[i] = static_cast<uint8_t>(i * 7 + i / page);
  write_synced(dir / "f.bin", contents);
  const auto file = MappedFile::open((dir / "f.bin").string());
  uint8_t* data = file->data();
  // Every page read in, one written (its private copy-on-write page).
  volatile uint64_t sum = 0;
  for (size_t i = 0; i < size; i += page) sum += data[i];
  data[10 * page + 5] ^= 0xff;
  ASSERT_GE(resident_kib(data), static_cast<int64_t>(size / 1024) - 4);
  if (MappedFile::page_out(data, size) == 0) GTEST_SKIP() << "this kernel has no MADV_PAGEOUT";
  // The clean pages went (here all but the written one; under memory pressure
  // the kernel may keep a few: half is the bound).
  EXPECT_LT(resident_kib(data), static_cast<int64_t>(size / 1024 / 2));
  // Reading faults the file's bytes back in; the written byte kept its value.
  contents[10 * page + 5] ^= 0xff;
  EXPECT_EQ(std::memcmp(data, contents.data(), size), 0);
}

TEST(MappedFile, PageOutAdvisesOnlyWholePagesOfALiveMapping) {
  ScratchDir dir;
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGE_SIZE));
  std::ofstream((dir / "f.bin").string(), std::ios::binary) << std::string(8 * page, 'x');
  const auto file = MappedFile::open((dir / "f.bin").string());
  if (MappedFile::page_out(file->data(), page) == 0) GTEST_SKIP() << "this kernel has no MADV_PAGEOUT";
  // Partial pages at either end are left alone: a neighbour may still use them.
  EXPECT_EQ(MappedFile::page_out(file->data() + 1, 3 * page), 2 * page);
  EXPECT_EQ(MappedFile::page_out(file->data() + 1, page), 0u);
  // Outside the mapping (the heap, or a range running a page past its end): nothing.
  std::vector<uint8_t> heap(16 * page);
  EXPECT_EQ(MappedFile::page_out(heap.data(), heap.size()), 0u);
  EXPECT_EQ(MappedFile::page_out(file->data() + page, 8 * page), 0u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(file->data()), 8 * page), std::string(8 * page, 'x'));
}

}  // namespace
}  // namespace pbllm::io
