#include "pbllm/io/safetensors.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstring>

#include "pbllm/core/check.h"
#include "pbllm/core/interrupt.h"
#include "pbllm/io/atomic_file.h"

namespace pbllm::io {
namespace {

constexpr std::array<std::pair<const char*, at::ScalarType>, 11> kDtypes{{
    {"F32", at::kFloat}, {"F16", at::kHalf}, {"BF16", at::kBFloat16}, {"F64", at::kDouble},
    {"I64", at::kLong}, {"I32", at::kInt}, {"I16", at::kShort}, {"I8", at::kChar},
    {"U8", at::kByte}, {"BOOL", at::kBool}, {"U16", at::kUInt16},
}};

// The header is kept under 100 MB as the reference implementation does, so a
// corrupt length cannot make us parse gigabytes of tensor data as JSON.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

// Bytes of a tensor of `shape` and `element_size`; false when that overflows 64 bits.
bool tensor_bytes(const std::vector<int64_t>& shape, size_t element_size, size_t* bytes) {
  size_t count = element_size;
  for (int64_t dim : shape)
    if (__builtin_mul_overflow(count, static_cast<size_t>(dim), &count)) return false;
  *bytes = count;
  return true;
}

SafetensorsEntry parse_entry(const std::string& path, const std::string& name, const nlohmann::json& value,
                             size_t data_size) {
  PBLLM_CHECK(value.is_object() && value.contains("dtype") && value.contains("shape") &&
                  value.contains("data_offsets"),
              path, ": tensor '", name, "' needs dtype, shape and data_offsets in the header");
  SafetensorsEntry entry;
  PBLLM_CHECK(value["dtype"].is_string(), path, ": tensor '", name, "' has a non-string dtype");
  try {
    entry.dtype = safetensors_dtype_from_name(value["dtype"].get<std::string>());
  } catch (const Error& error) {
    throw Error(str_cat(path, ": tensor '", name, "': ", error.what()));
  }
  PBLLM_CHECK(value["shape"].is_array(), path, ": tensor '", name, "' has a shape that is not a list");
  for (const auto& dim : value["shape"]) {
    PBLLM_CHECK(dim.is_number_integer() && dim.get<int64_t>() >= 0, path, ": tensor '", name,
                "' has a bad dimension ", dim.dump());
    entry.shape.push_back(dim.get<int64_t>());
  }
  const auto& offsets = value["data_offsets"];
  PBLLM_CHECK(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                  offsets[1].is_number_unsigned(),
              path, ": tensor '", name, "' has data_offsets that are not two non-negative integers");
  entry.begin = offsets[0].get<size_t>();
  entry.end = offsets[1].get<size_t>();
  PBLLM_CHECK(entry.begin <= entry.end && entry.end <= data_size, path, ": tensor '", name,
              "' has data_offsets [", entry.begin, ", ", entry.end, "] out of range (data section is ", data_size,
              " bytes; file truncated?)");
  size_t expected = 0;
  PBLLM_CHECK(tensor_bytes(entry.shape, at::elementSize(entry.dtype), &expected), path, ": tensor '", name,
              "' has a shape ", value["shape"].dump(), " whose byte size overflows 64 bits");
  PBLLM_CHECK(entry.end - entry.begin == expected, path, ": tensor '", name, "' has ", entry.end - entry.begin,
              " bytes but its shape and dtype need ", expected);
  return entry;
}

void check_no_overlap(const std::string& path, const std::map<std::string, SafetensorsEntry>& entries) {
  std::vector<std::pair<const std::string*, const SafetensorsEntry*>> ordered;
  for (const auto& [name, entry] : entries) ordered.emplace_back(&name, &entry);
  std::sort(ordered.begin(), ordered.end(),
            [](const auto& a, const auto& b) { return a.second->begin < b.second->begin; });
  for (size_t i = 1; i < ordered.size(); ++i) {
    const auto& previous = *ordered[i - 1].second;
    const auto& current = *ordered[i].second;
    PBLLM_CHECK(current.begin >= previous.end || current.begin == current.end || previous.begin == previous.end,
                path, ": tensors '", *ordered[i - 1].first, "' and '", *ordered[i].first, "' overlap");
  }
}

}  // namespace

at::ScalarType safetensors_dtype_from_name(const std::string& name) {
  for (const auto& [known, dtype] : kDtypes)
    if (name == known) return dtype;
  throw Error(str_cat("unknown dtype '", name, "' (supported: F32, F16, BF16, F64, I64, I32, I16, I8, U8, U16, BOOL)"));
}

std::string safetensors_dtype_name(at::ScalarType dtype) {
  for (const auto& [name, known] : kDtypes)
    if (dtype == known) return name;
  throw Error(str_cat("cannot store dtype ", at::toString(dtype), " in safetensors"));
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(MappedFile::open(path)) {
  const size_t size = file_->size();
  PBLLM_CHECK(size >= 8, path, ": too short for a safetensors file (", size, " bytes)");
  uint64_t header_size = 0;
  std::memcpy(&header_size, file_->data(), 8);  // little-endian on every host we build for
  PBLLM_CHECK(header_size <= kMaxHeaderBytes && header_size <= size - 8, path, ": header length ", header_size,
              " runs past the end of the file (", size, " bytes); the file is truncated or not safetensors");
  data_start_ = 8 + header_size;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(file_->data() + 8, file_->data() + data_start_);
  } catch (const nlohmann::json::exception& error) {
    throw Error(str_cat(path, ": bad JSON header (", error.what(), ")"));
  }
  PBLLM_CHECK(header.is_object(), path, ": the JSON header is not an object");
  const size_t data_size = size - data_start_;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      PBLLM_CHECK(value.is_object(), path, ": __metadata__ is not an object");
      for (const auto& [key, text] : value.items())
        metadata_[key] = text.is_string() ? text.get<std::string>() : text.dump();
      continue;
    }
    entries_.emplace(name, parse_entry(path, name, value, data_size));
  }
  check_no_overlap(path, entries_);
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> names;
  for (const auto& [name, entry] : entries_) names.push_back(name);
  return names;
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  auto found = entries_.find(name);
  PBLLM_CHECK(found != entries_.end(), path(), ": no tensor named '", name, "'");
  return found->second;
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsEntry& info = entry(name);
  uint8_t* bytes = file_->data() + data_start_ + info.begin;
  const auto options = at::TensorOptions().dtype(info.dtype);
  if (reinterpret_cast<uintptr_t>(bytes) % at::elementSize(info.dtype) != 0) {
    at::Tensor copy = at::empty(info.shape, options);
    if (info.end > info.begin) std::memcpy(copy.data_ptr(), bytes, info.end - info.begin);  // empty: no pointer
    return copy;
  }
  auto keep_alive = file_;  // the deleter owns a reference: the mapping outlives the tensor
  return at::from_blob(bytes, info.shape, [keep_alive](void*) {}, options);
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> contiguous;
  size_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    PBLLM_CHECK(!header.contains(name), path, ": tensor name '", name, "' given twice");
    at::Tensor data = tensor.cpu().contiguous();
    const size_t bytes = data.numel() * data.element_size();
    header[name] = {{"dtype", safetensors_dtype_name(data.scalar_type())},
                    {"shape", data.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(std::move(data));
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned
  write_file_atomically(path, [&](std::ostream& out) {
    const uint64_t header_size = text.size();
    out.write(reinterpret_cast<const char*>(&header_size), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const at::Tensor& data : contiguous) {
      check_interrupted();  // a signal between tensors removes the half-written file
      out.write(static_cast<const char*>(data.data_ptr()), static_cast<std::streamsize>(data.nbytes()));
    }
  });
}

}  // namespace pbllm::io
