// safetensors: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
// then the raw tensor bytes. Reading maps the file; tensors are views into it.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pbllm/io/mapped_file.h"

namespace pbllm::io {

struct SafetensorsEntry {
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  size_t begin = 0;  // byte offsets into the data section
  size_t end = 0;
};

class SafetensorsFile {
 public:
  // Maps and validates the whole header: every error names the file and the problem.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return file_->path(); }
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;
  // A CPU tensor viewing the mapped bytes (copied only when misaligned for its dtype).
  at::Tensor tensor(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The 8-byte length and the JSON header: everything before the tensors' bytes.
  size_t header_bytes() const { return data_start_; }

 private:
  std::shared_ptr<MappedFile> file_;
  size_t data_start_ = 0;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Writes `tensors` (any device, any layout: made contiguous on the CPU) atomically.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// "F32" <-> at::kFloat, ...; an unknown name or type throws.
at::ScalarType safetensors_dtype_from_name(const std::string& name);
std::string safetensors_dtype_name(at::ScalarType dtype);

}  // namespace pbllm::io
