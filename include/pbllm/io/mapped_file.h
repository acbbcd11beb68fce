// A copy-on-write view of a whole file through mmap, shared by every tensor that
// points into it: tensors built with at::from_blob keep the mapping alive.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace pbllm::io {

class MappedFile {
 public:
  // Maps `path` copy-on-write (MAP_PRIVATE), so a caller that writes into a
  // tensor view changes only its own pages, never the file.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  // Gives back the resident pages wholly inside [begin, begin + bytes) when
  // they lie in a live mapping (anything else is left alone), for a tensor
  // the caller no longer needs: madvise(MADV_PAGEOUT), which never loses data.
  // A page never written is the file's and is dropped (a later read faults it
  // back in from the file); a page written since (copy-on-write) could only go
  // to swap and otherwise stays. The pages leave the page cache too, so a later
  // reader of the file (another run) reads them from disk again; a kernel may
  // keep pages of a file the process cannot write. Returns the bytes advised
  // (0 on a kernel before 5.4, where it is a no-op).
  static size_t page_out(const void* begin, size_t bytes);

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  uint8_t* data_;
  size_t size_;
};

}  // namespace pbllm::io
