// A read-only view of a whole file through mmap, shared by every tensor that
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
