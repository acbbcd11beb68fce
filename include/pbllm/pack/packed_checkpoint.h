// The packed PB checkpoint (docs/DESIGN.md, "The packed PB format"): one
// safetensors file, model.pb.safetensors, beside config.json and the
// tokenizer files. The tensors that were not quantized (embeddings, norms,
// head, biases) are stored as in the source checkpoint; each quantized
// Linear's weight W is stored as the tensors "W.pb.<suffix>" of PackedLinear.
// __metadata__ holds:
//   "format": "pt", "pbllm.format": "pb", "pbllm.format_version": "2" (or
//       "3" where a Linear has an affine high-bit grid: pbllm-qat's),
//   "pbllm.settings": JSON {what produced the file (the tool's settings and
//       command), layout (the format in words)},
//   "pbllm.linears": JSON {W: {shape, group_columns, dtype, method, high_bit,
//       rice_k, salient[, high_grid]}}  (what the decoder needs, checked
//       against the tensors).
// safetensors keeps the mmap'd reader and its corruption checks; a reader
// that does not know the format sees plain uint8 / float tensors.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pbllm/io/checkpoint.h"
#include "pbllm/pack/packed_linear.h"

namespace pbllm::pack {

inline constexpr const char* kPackedWeightsFile = "model.pb.safetensors";
inline constexpr int kPackedFormatVersion = 3;  // the newest; files of versions 2 and 3 are read

using PackedLinears = std::map<std::string, std::shared_ptr<const PackedLinear>>;

// Writes the packed file: `plain` as they are, `packed` as "<name>.pb.<suffix>".
// `settings` goes to the metadata with "layout" added.
void save_packed_safetensors(const std::filesystem::path& path, const io::NamedTensors& plain,
                             const PackedLinears& packed, const nlohmann::json& settings);

// The packed Linears of a checkpoint (none unless its weights file is
// model.pb.safetensors), each checked against its metadata.
PackedLinears read_packed_linears(const io::Checkpoint& checkpoint);
// The same for one file written by save_packed_safetensors (the state folder's layers too).
PackedLinears read_packed_linears(const io::SafetensorsFile& file);
// "...weight.pb.mask" and the like: tensors that belong to a packed Linear.
bool is_packed_tensor_name(const std::string& name);

// Sizes measured from the files: bits per weight are bytes on disk x 8.
struct LinearSize {
  std::string name;
  int64_t weights = 0, salient = 0;
  int64_t mask_bytes = 0, low_bytes = 0, high_bytes = 0, parameter_bytes = 0;
  double mask_entropy_bits = 0;  // the bound for this Linear's salient positions (mask_codec.h), in bits
  int64_t bytes() const { return mask_bytes + low_bytes + high_bytes + parameter_bytes; }
};

struct ModelSize {
  std::string weights_file;
  int64_t file_bytes = 0, header_bytes = 0, parameters = 0;
  std::vector<LinearSize> linears;  // the packed ones
  LinearSize linear_totals() const;
  // (the packed Linears' bytes + every header byte) x 8 / their weights; 0 without packed Linears.
  double linear_bits_per_weight() const;
  double file_bits_per_weight() const { return parameters ? 8.0 * file_bytes / parameters : 0; }
  nlohmann::json to_json() const;
};

// `parameters`: the model's parameter count (the packed Linears count as their weights).
ModelSize measure_model_size(const io::Checkpoint& checkpoint, const PackedLinears& packed, int64_t parameters);
// Lines for a terminal: the totals, the split (mask / codes / parameters) and the mask's entropy bound.
std::string format_model_size(const ModelSize& size, const ModelSize* source);

// A tool's --save: the folder `dir` (io::save_model_directory: the source's
// side files, then `extra_files`) with model.pb.safetensors when `packed` is
// given (`settings` in its metadata), else the fake-quant model.safetensors;
// then read back through the loader (which checks every packed Linear) and
// measured (`parameters`: the saved model's; `source_parameters`: the
// source's). `report` gets "size" and "source_size" and replaces
// dir/report.json. Returns the lines to print.
std::string save_model_folder(const io::Checkpoint& source, const std::filesystem::path& dir,
                              const io::NamedTensors& tensors, const PackedLinears* packed,
                              const nlohmann::json& settings, std::map<std::string, std::string> extra_files,
                              int64_t parameters, int64_t source_parameters, nlohmann::json& report);

}  // namespace pbllm::pack
