#include "pbllm/quant/run_state.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "pbllm/core/check.h"
#include "pbllm/io/atomic_file.h"
#include "pbllm/io/hf_export.h"
#include "pbllm/io/sha256.h"
#include "pbllm/pack/packed_linear.h"

namespace pbllm::quant {
namespace fs = std::filesystem;

namespace {

constexpr const char* kManifest = "manifest.json";
constexpr const char* kLock = "lock";
constexpr const char* kCheckpoint = "checkpoint.safetensors";

bool is_temporary(const std::string& name) { return name.find(".tmp.") != std::string::npos; }

bool is_state_file(const std::string& name) {
  return name == kManifest || name == kLock || name == kCheckpoint || is_temporary(name) ||
         (name.rfind("layer-", 0) == 0 && name.size() > 12 && name.substr(name.size() - 12) == ".safetensors");
}

// The folder holds nothing but what a RunState writes (a manifest-less one
// is a run killed before its manifest was written).
void require_state_folder(const fs::path& dir) {
  for (const auto& entry : fs::directory_iterator(dir))
    if (!is_state_file(entry.path().filename().string()))
      throw StateError(str_cat(dir.string(), " is not a pbllm state folder (it holds ", entry.path().filename().string(),
                               "): move it away, pbllm will not delete it"));
}

// Removes what `keep` rejects (temporaries of killed writers, or everything on --restart).
template <typename Keep>
void remove_state_files(const fs::path& dir, Keep&& keep) {
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name != kLock && !keep(name)) fs::remove(entry.path());
  }
}

std::string json_value(const nlohmann::json* value) { return value ? value->dump() : "(absent)"; }

}  // namespace

fs::path state_dir_beside(const fs::path& output_dir) {
  fs::path dir = output_dir.lexically_normal();
  if (dir.filename().empty()) dir = dir.parent_path();  // "out/" -> "out"
  return dir.parent_path() / (dir.filename().string() + ".pbllm-state");
}

nlohmann::json model_file_hashes(const io::Checkpoint& checkpoint) {
  nlohmann::json hashes = nlohmann::json::object();
  auto add = [&](const fs::path& file) { hashes[file.filename().string()] = io::sha256_file(file); };
  add(checkpoint.dir() / "config.json");
  for (const fs::path& file : checkpoint.weight_files()) add(file);
  for (const char* name : io::kCopiedModelFiles)
    if (fs::exists(checkpoint.dir() / name)) add(checkpoint.dir() / name);
  return hashes;
}

std::vector<std::string> manifest_differences(const nlohmann::json& kept, const nlohmann::json& now) {
  std::vector<std::string> differences;
  auto compare = [&](const std::string& section, auto&& describe) {
    const nlohmann::json empty = nlohmann::json::object();
    const nlohmann::json& a = kept.contains(section) ? kept.at(section) : empty;
    const nlohmann::json& b = now.contains(section) ? now.at(section) : empty;
    nlohmann::json keys = a;
    keys.update(b);  // the union of the names
    for (const auto& [key, ignored] : keys.items()) {
      const nlohmann::json* before = a.contains(key) ? &a.at(key) : nullptr;
      const nlohmann::json* after = b.contains(key) ? &b.at(key) : nullptr;
      if (!before || !after || *before != *after) differences.push_back(describe(key, before, after));
    }
  };
  compare("arguments", [](const std::string& key, const nlohmann::json* before, const nlohmann::json* after) {
    return str_cat(key == "model" || key == "dataset" || key == "low_quant_method" ? key : "--" + key, " was ",
                   json_value(before), ", now ", json_value(after));
  });
  compare("files", [](const std::string& key, const nlohmann::json*, const nlohmann::json*) {
    return str_cat(key, " changed (sha256)");
  });
  if (kept.value("pbllm_version", "") != now.value("pbllm_version", ""))
    differences.push_back(str_cat("it was written by pbllm ", kept.value("pbllm_version", "(unknown)"),
                                  ", this is pbllm ", now.value("pbllm_version", "(unknown)")));
  return differences;
}

RunState::RunState(fs::path dir, nlohmann::json manifest, bool restart, const std::string& tool)
    : dir_(std::move(dir)) {
  const auto status = fs::symlink_status(dir_);
  if (fs::is_symlink(status))
    throw StateError(str_cat(dir_.string(), " is a symbolic link: pbllm keeps its state in a real folder"));
  if (fs::exists(status) && !fs::is_directory(status))
    throw StateError(str_cat(dir_.string(), " exists and is not a folder: pbllm keeps the run's state there; move it away"));
  // The folders made for it (e.g. output/) go with it when the run completes.
  for (fs::path missing = dir_.parent_path(); !missing.empty() && !fs::exists(missing); missing = missing.parent_path())
    made_parents_.push_back(missing);
  std::error_code error;
  fs::create_directories(dir_, error);
  PBLLM_CHECK(!error, "cannot create the state folder ", dir_.string(), ": ", error.message());
  require_state_folder(dir_);

  // One run per folder: two writers would interleave layers of different runs.
  const fs::path lock = dir_ / kLock;
  lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  PBLLM_CHECK(lock_fd_ >= 0, "cannot open ", lock.string(), ": ", std::strerror(errno));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error_number = errno;
    ::close(lock_fd_);
    PBLLM_CHECK(error_number == EWOULDBLOCK, "cannot lock ", lock.string(), ": ", std::strerror(error_number));
    throw StateError(str_cat("another ", tool, " is running with the state folder ", dir_.string(),
                        " (the same output): wait for it or give this run another --save"));
  }

  const fs::path manifest_path = dir_ / kManifest;
  const bool fresh = restart || !fs::exists(manifest_path);  // layers of an unknown run are not trusted
  if (!fresh) {
    const auto differences = manifest_differences(io::read_json_file(manifest_path), manifest);
    if (!differences.empty()) {
      std::string list;
      for (const std::string& d : differences) list += (list.empty() ? "" : "; ") + d;
      ::close(lock_fd_);
      throw StateError(str_cat(dir_.string(), " holds the kept state of a different run (", list,
                          "): run the same command to resume it, or add --restart to discard it"));
    }
  }
  // Temporaries of a killed writer go; on a fresh start, every kept layer too.
  remove_state_files(dir_, [&](const std::string& name) { return !fresh && !is_temporary(name); });
  io::write_file_atomically(manifest_path.string(), [&](std::ostream& out) { out << manifest.dump(2) << "\n"; });
  while (fs::exists(layer_file(finished_))) ++finished_;
}

RunState::~RunState() {
  // A state without kept work (a run that failed early) helps no one: it goes too.
  if (finished_ == 0 && !has_checkpoint() && lock_fd_ >= 0) {
    try {
      remove();
    } catch (const std::exception&) {  // a destructor must not throw; the folder stays, harmless
    }
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

fs::path RunState::layer_file(int64_t layer) const {
  char name[64];
  std::snprintf(name, sizeof name, "layer-%05lld.safetensors", static_cast<long long>(layer));
  return dir_ / name;
}

fs::path RunState::checkpoint_file() const { return dir_ / kCheckpoint; }

bool RunState::has_checkpoint() const { return fs::exists(checkpoint_file()); }

void RunState::save_layer(const LayerState& state) {
  nlohmann::json settings = {{"layer", finished_}, {"reports", linear_reports_json(state.reports)}};
  pack::save_packed_safetensors(layer_file(finished_), state.weights, state.packed, settings);
  ++finished_;
}

LayerState RunState::load_layer(int64_t layer) const {
  PBLLM_CHECK(layer < finished_, "layer ", layer, " is not in the state folder ", dir_.string());
  try {
    const io::SafetensorsFile file(layer_file(layer).string());
    auto settings = file.metadata().find("pbllm.settings");
    PBLLM_CHECK(settings != file.metadata().end(), file.path(), ": no __metadata__ \"pbllm.settings\"");
    const auto json = nlohmann::json::parse(settings->second);
    PBLLM_CHECK(json.at("layer").get<int64_t>() == layer, file.path(), ": it holds layer ", json.at("layer").dump());
    LayerState state;
    state.reports = linear_reports_from_json(json.at("reports"));
    state.packed = pack::read_packed_linears(file);
    for (const std::string& name : file.names())
      if (!pack::is_packed_tensor_name(name)) state.weights.emplace_back(name, file.tensor(name).clone());
    for (const auto& [name, packed] : state.packed) state.weights.emplace_back(name, pack::decode_linear(*packed));
    return state;
  } catch (const std::exception& error) {
    throw StateError(str_cat("cannot resume from ", layer_file(layer).string(), " (", error.what(),
                        "): add --restart to start over"));
  }
}

void RunState::remove() {
  std::error_code error;
  fs::remove_all(dir_, error);  // the lock goes with it; the descriptor is closed by the destructor
  PBLLM_CHECK(!error, "cannot remove the finished run's state folder ", dir_.string(), ": ", error.message());
  for (const fs::path& parent : made_parents_)
    if (!fs::remove(parent, error)) break;  // not empty: something else lives there now
}

}  // namespace pbllm::quant
