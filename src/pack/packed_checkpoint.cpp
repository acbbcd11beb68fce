#include "pbllm/pack/packed_checkpoint.h"

#include <cstdio>
#include <cstring>
#include <type_traits>

#include "pbllm/core/check.h"
#include "pbllm/io/atomic_file.h"
#include "pbllm/io/hf_export.h"

namespace pbllm::pack {
namespace fs = std::filesystem;

namespace {

constexpr const char* kSeparator = ".pb.";

// What the format says, for the metadata ("pbllm.settings" "layout").
constexpr const char* kLayout =
    "per Linear W: W.pb.mask = Golomb-Rice gaps between salient positions, row-major, restarting every 64 rows "
    "(W.pb.mask_index: first bit and salient count before each block); W.pb.low_codes / W.pb.high_codes = codes "
    "LSB-first in row-major order of the non-salient / salient weights; the high-bit grid per row: for \"high_grid\" "
    "zero_point (the default) value = scale * (code - zero), W.pb.high_range = (low, high) in the checkpoint's dtype "
    "with scale = (high - low) / maxq, zero = round(-low / scale), else W.pb.high_scale, high_zero; for "
    "\"high_grid\" affine (format version 3) value = code * high_scale + high_offset; float32 arithmetic, then the "
    "checkpoint's dtype; W.pb.low_values = xnor's values of codes 0 and 1 per (group, row) in the checkpoint's "
    "dtype; W.pb.low_scale, low_zero per (group, row) for the other methods; W.pb.zero_signs, zero_sign_values = "
    "xnor weights equal to their mean, and their values";

// The format version of a file with these Linears: 3 only where an affine
// high-bit grid needs it, so a pbllm that reads version 2 still reads the rest.
int format_version(const PackedLinears& packed) {
  for (const auto& [name, linear] : packed)
    if (linear->high_grid == HighGrid::affine) return 3;
  return 2;
}

nlohmann::json linear_metadata(const PackedLinear& p) {
  nlohmann::json entry = {{"shape", {p.rows, p.columns}},
                          {"group_columns", p.group_columns},
                          {"dtype", io::safetensors_dtype_name(p.dtype)},
                          {"method", low_bit_method_traits(p.method).name},
                          {"high_bit", p.high_bit},
                          {"rice_k", p.rice_k},
                          {"salient", p.salient}};
  if (p.high_grid != HighGrid::zero_point) entry["high_grid"] = high_grid_name(p.high_grid);
  return entry;
}

// metadata[key] parsed as JSON; errors name the file and the key.
nlohmann::json metadata_json(const io::SafetensorsFile& file, const std::string& key) {
  auto found = file.metadata().find(key);
  PBLLM_CHECK(found != file.metadata().end(), file.path(), ": __metadata__ has no \"", key, "\"");
  try {
    return nlohmann::json::parse(found->second);
  } catch (const nlohmann::json::exception& error) {
    throw Error(str_cat(file.path(), ": __metadata__ \"", key, "\" is not JSON (", error.what(), ")"));
  }
}

template <typename T>
T field(const nlohmann::json& entry, const char* key, const std::string& where) {
  PBLLM_CHECK(entry.is_object() && entry.contains(key), where, ": no \"", key, "\"");
  // Integers through the one checked conversion (a float there is undefined behaviour in get<T>).
  if constexpr (std::is_integral_v<T>)
    if (entry.at(key).is_number()) return io::json_integer<T>(entry.at(key), str_cat(where, ": \"", key, "\""));
  try {
    return entry.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error(str_cat(where, ": \"", key, "\" has the wrong type (", entry.at(key).dump(), ")"));
  }
}

PackedLinear packed_from_metadata(const io::SafetensorsFile& source, const std::string& name,
                                  const nlohmann::json& entry, const std::string& file, int version) {
  const std::string where = str_cat(file, ": Linear ", name);
  PackedLinear p;
  p.name = str_cat(file, ": ", name);
  const auto shape = field<nlohmann::json>(entry, "shape", where);
  PBLLM_CHECK(shape.is_array() && shape.size() == 2, where, ": \"shape\" is not [rows, columns]");
  p.rows = io::json_integer<int64_t>(shape[0], where + ": \"shape\"");
  p.columns = io::json_integer<int64_t>(shape[1], where + ": \"shape\"");
  p.group_columns = field<int64_t>(entry, "group_columns", where);
  p.dtype = io::safetensors_dtype_from_name(field<std::string>(entry, "dtype", where));
  p.method = low_bit_method_from_name(field<std::string>(entry, "method", where));
  p.high_bit = field<int>(entry, "high_bit", where);
  p.rice_k = field<int>(entry, "rice_k", where);
  p.salient = field<int64_t>(entry, "salient", where);
  if (entry.contains("high_grid")) {
    p.high_grid = high_grid_from_name(field<std::string>(entry, "high_grid", where), where);
    PBLLM_CHECK(version >= 3 || p.high_grid == HighGrid::zero_point, where, ": an ", high_grid_name(p.high_grid),
                " high-bit grid in a format version ", version, " file (it came with version 3)");
  }
  auto tensor = [&](const char* suffix) {
    const std::string key = name + kSeparator + suffix;
    return source.contains(key) ? source.tensor(key) : at::Tensor();
  };
  p.mask = tensor("mask");
  p.mask_index = tensor("mask_index");
  p.low_codes = tensor("low_codes");
  p.high_codes = tensor("high_codes");
  p.high_scale = tensor("high_scale");
  p.high_zero = tensor("high_zero");
  p.high_range = tensor("high_range");
  p.high_offset = tensor("high_offset");
  p.low_scale = tensor("low_scale");
  p.low_zero = tensor("low_zero");
  p.low_values = tensor("low_values");
  p.zero_signs = tensor("zero_signs");
  p.zero_sign_values = tensor("zero_sign_values");
  check_packed_linear(p);
  return p;
}

}  // namespace

bool is_packed_tensor_name(const std::string& name) { return name.find(kSeparator) != std::string::npos; }

void save_packed_safetensors(const fs::path& path, const io::NamedTensors& plain, const PackedLinears& packed,
                             const nlohmann::json& settings) {
  io::NamedTensors tensors;
  nlohmann::json with_layout = settings;
  with_layout["layout"] = kLayout;
  nlohmann::json linears = nlohmann::json::object();
  for (const auto& [name, tensor] : plain)
    if (!packed.count(name)) tensors.emplace_back(name, tensor);
  for (const auto& [name, linear] : packed) {
    linears[name] = linear_metadata(*linear);
    for (const auto& [suffix, tensor] : linear->tensors()) tensors.emplace_back(name + kSeparator + suffix, tensor);
  }
  io::save_safetensors(path.string(), tensors,
                       {{"format", "pt"},
                        {"pbllm.format", "pb"},
                        {"pbllm.format_version", std::to_string(format_version(packed))},
                        {"pbllm.settings", with_layout.dump()},
                        {"pbllm.linears", linears.dump()}});
}

PackedLinears read_packed_linears(const io::Checkpoint& checkpoint) {
  if (checkpoint.weights_file() != kPackedWeightsFile) return {};
  return read_packed_linears(*checkpoint.safetensors_files().at(0));
}

PackedLinears read_packed_linears(const io::SafetensorsFile& file) {
  PackedLinears packed;
  const auto& metadata = file.metadata();
  auto format = metadata.find("pbllm.format");
  PBLLM_CHECK(format != metadata.end() && format->second == "pb", file.path(),
              ": not a pbllm packed checkpoint (__metadata__ \"pbllm.format\" is not \"pb\")");
  auto version_entry = metadata.find("pbllm.format_version");
  int version = 0;
  for (int known = 2; known <= kPackedFormatVersion; ++known)
    if (version_entry != metadata.end() && version_entry->second == std::to_string(known)) version = known;
  PBLLM_CHECK(version != 0, file.path(), ": packed format version ",
              version_entry == metadata.end() ? "(none)" : version_entry->second,
              " is not one this pbllm reads (2 to ", kPackedFormatVersion, "); use the pbllm that wrote it");
  const nlohmann::json linears = metadata_json(file, "pbllm.linears");
  PBLLM_CHECK(linears.is_object(), file.path(), ": __metadata__ \"pbllm.linears\" is not an object");
  for (const auto& [name, entry] : linears.items())
    packed[name] = std::make_shared<const PackedLinear>(packed_from_metadata(file, name, entry, file.path(), version));
  for (const std::string& name : file.names()) {
    if (!is_packed_tensor_name(name)) continue;
    const size_t separator = name.find(kSeparator);
    auto linear = packed.find(name.substr(0, separator));
    PBLLM_CHECK(linear != packed.end(), file.path(), ": tensor '", name,
                "' belongs to no Linear listed in __metadata__ \"pbllm.linears\"");
    PBLLM_CHECK(linear->second->tensors().count(name.substr(separator + std::strlen(kSeparator))), file.path(),
                ": tensor '", name, "' is not a part of a ", low_bit_method_traits(linear->second->method).name,
                " Linear in this format");
  }
  return packed;
}

LinearSize ModelSize::linear_totals() const {
  LinearSize total;
  total.name = "all";
  for (const LinearSize& l : linears) {
    total.weights += l.weights;
    total.salient += l.salient;
    total.mask_bytes += l.mask_bytes;
    total.low_bytes += l.low_bytes;
    total.high_bytes += l.high_bytes;
    total.parameter_bytes += l.parameter_bytes;
    total.mask_entropy_bits += l.mask_entropy_bits;
  }
  return total;
}

double ModelSize::linear_bits_per_weight() const {
  const LinearSize total = linear_totals();
  return total.weights ? 8.0 * static_cast<double>(total.bytes() + header_bytes) / total.weights : 0;
}

ModelSize measure_model_size(const io::Checkpoint& checkpoint, const PackedLinears& packed, int64_t parameters) {
  ModelSize size;
  size.weights_file = checkpoint.weights_file();
  size.parameters = parameters;
  for (const fs::path& file : checkpoint.weight_files()) size.file_bytes += static_cast<int64_t>(fs::file_size(file));
  for (const auto& file : checkpoint.safetensors_files()) size.header_bytes += static_cast<int64_t>(file->header_bytes());
  for (const auto& [name, p] : packed) {
    LinearSize l;
    l.name = name;
    l.weights = p->weights();
    l.salient = p->salient;
    l.mask_entropy_bits = mask_entropy_bits_per_weight(l.weights, l.salient) * static_cast<double>(l.weights);
    for (const auto& [suffix, tensor] : p->tensors()) {
      const auto bytes = static_cast<int64_t>(tensor.nbytes());
      if (suffix == "mask" || suffix == "mask_index") l.mask_bytes += bytes;
      else if (suffix == "low_codes" || suffix == "zero_signs" || suffix == "zero_sign_values") l.low_bytes += bytes;
      else if (suffix == "high_codes") l.high_bytes += bytes;
      else l.parameter_bytes += bytes;
    }
    size.linears.push_back(std::move(l));
  }
  return size;
}

nlohmann::json ModelSize::to_json() const {
  nlohmann::json json = {{"weights_file", weights_file},
                         {"file_bytes", file_bytes},
                         {"header_bytes", header_bytes},
                         {"parameters", parameters},
                         {"file_bits_per_weight", file_bits_per_weight()}};
  if (linears.empty()) return json;
  const LinearSize total = linear_totals();
  json["linear_bits_per_weight"] = linear_bits_per_weight();
  json["linear_weights"] = total.weights;
  auto split = [](const LinearSize& l) {
    const double w = static_cast<double>(l.weights);
    return nlohmann::json{{"weights", l.weights},
                          {"salient", l.salient},
                          {"bytes", l.bytes()},
                          {"bits_per_weight", 8.0 * l.bytes() / w},
                          {"mask_bits_per_weight", 8.0 * l.mask_bytes / w},
                          {"mask_entropy_bound_bits_per_weight", l.mask_entropy_bits / w},
                          {"low_code_bits_per_weight", 8.0 * l.low_bytes / w},
                          {"high_code_bits_per_weight", 8.0 * l.high_bytes / w},
                          {"parameter_bits_per_weight", 8.0 * l.parameter_bytes / w}};
  };
  json["linear_totals"] = split(total);
  nlohmann::json each = nlohmann::json::object();
  for (const LinearSize& l : linears) each[l.name] = split(l);
  json["linears"] = each;
  return json;
}

std::string format_model_size(const ModelSize& size, const ModelSize* source) {
  char line[512];
  std::string text;
  std::snprintf(line, sizeof line, "size         %s: %.2f MiB, %.3f bits/weight over all %lld parameters",
                size.weights_file.c_str(), size.file_bytes / 1048576.0, size.file_bits_per_weight(),
                static_cast<long long>(size.parameters));
  text += line;
  if (source != nullptr && source->file_bytes > 0)
    text += str_cat(" (the source's ", source->weights_file, ": ",
                    std::to_string(source->file_bytes / 1048576.0).substr(0, 6), " MiB, ",
                    std::to_string(static_cast<double>(source->file_bytes) / size.file_bytes).substr(0, 5),
                    "x larger)");
  text += "\n";
  if (size.linears.empty()) return text;
  const LinearSize t = size.linear_totals();
  const double w = static_cast<double>(t.weights);
  // Bits spent on positions per salient weight, against the bound for n choose k.
  std::snprintf(line, sizeof line,
                "packed       %zu Linears, %lld weights: %.3f bits/weight on disk (mask %.3f [entropy bound %.3f], "
                "low codes %.3f, high codes %.3f, parameters %.3f, headers %.3f)\n",
                size.linears.size(), static_cast<long long>(t.weights), size.linear_bits_per_weight(),
                8.0 * t.mask_bytes / w, t.mask_entropy_bits / w, 8.0 * t.low_bytes / w,
                8.0 * t.high_bytes / w, 8.0 * t.parameter_bytes / w, 8.0 * size.header_bytes / w);
  text += line;
  return text;
}

std::string save_model_folder(const io::Checkpoint& source, const fs::path& dir, const io::NamedTensors& tensors,
                              const PackedLinears* packed, const nlohmann::json& settings,
                              std::map<std::string, std::string> extra_files, int64_t parameters,
                              int64_t source_parameters, nlohmann::json& report) {
  extra_files["report.json"] = report.dump(2) + "\n";
  if (packed != nullptr) {
    io::save_model_directory(
        source.dir(), dir,
        [&](const fs::path& folder) { save_packed_safetensors(folder / kPackedWeightsFile, tensors, *packed, settings); },
        extra_files);
  } else {
    io::save_hf_directory(source.dir(), dir, tensors, extra_files);
  }
  const auto saved = io::Checkpoint::open(dir.string());
  const ModelSize size = measure_model_size(saved, read_packed_linears(saved), parameters);
  const ModelSize source_size = measure_model_size(source, {}, source_parameters);
  report["size"] = size.to_json();
  report["source_size"] = source_size.to_json();
  io::write_file_atomically((dir / "report.json").string(), [&](std::ostream& out) { out << report.dump(2) << "\n"; });
  return str_cat("saved ", dir.string(), "\n", format_model_size(size, &source_size));
}

}  // namespace pbllm::pack
