// The state folder of a quantization run (docs/DESIGN.md, "Resume"), so a run
// killed at layer 27 of 32 goes on from layer 27 when the same command is run
// again. It sits beside the output folder, "<save dir>.pbllm-state/":
//   manifest.json             what the run is: the arguments that change the
//                             weights, sha256 of the model's files and of the
//                             calibration text, the pbllm version
//   layer-00000.safetensors   layer 0's quantized Linears: the weights as the
//                             model stores them, or for --format pb the packed
//                             Linears (which decode to those weights bit for
//                             bit); __metadata__ "pbllm.settings" holds
//                             {"layer", "reports"}
//   checkpoint.safetensors    pbllm-qat: the training state at its last
//                             checkpoint (latent weights, optimizer, step)
//   lock                      flock'ed while a run uses the folder
// Every file is written atomically, so a layer is there whole or not at all;
// the inputs of the first unfinished layer are recomputed through the kept
// ones, which on the CPU gives the uninterrupted run's bits.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "pbllm/core/check.h"
#include "pbllm/io/checkpoint.h"
#include "pbllm/io/safetensors.h"
#include "pbllm/pack/packed_checkpoint.h"
#include "pbllm/quant/layer_driver.h"

namespace pbllm::quant {

// A state folder pbllm must not use (damaged, foreign, busy, of another run):
// the run stops. Other errors (a folder that cannot be created) only lose the resume.
class StateError : public Error {
 public:
  using Error::Error;
};

// One finished layer.
struct LayerState {
  std::vector<LinearReport> reports;
  io::NamedTensors weights;    // by checkpoint name, in the checkpoint's dtype
  pack::PackedLinears packed;  // --format pb: these Linears are stored packed only
};

class RunState {
 public:
  // Opens `dir` for the run `manifest` describes, creating it when absent. A
  // folder left by a different run throws, naming what changed, unless
  // `restart`, which discards it; so does a folder another process is using
  // (`tool` names the other user).
  RunState(std::filesystem::path dir, nlohmann::json manifest, bool restart,
           const std::string& tool = "pbllm-quantize");
  // Releases the lock; a folder that never got a finished layer or checkpoint is removed.
  ~RunState();
  RunState(const RunState&) = delete;
  RunState& operator=(const RunState&) = delete;

  const std::filesystem::path& dir() const { return dir_; }
  // Layers 0 .. finished_layers() - 1 are kept.
  int64_t finished_layers() const { return finished_; }
  // A kept layer; packed Linears come back decoded in `weights` as well.
  LayerState load_layer(int64_t layer) const;
  // Keeps layer finished_layers() (atomically) and counts it.
  void save_layer(const LayerState& state);
  // Where a training run keeps its checkpoint (written atomically by its owner).
  std::filesystem::path checkpoint_file() const;
  bool has_checkpoint() const;
  // The run is complete: the folder goes.
  void remove();

 private:
  std::filesystem::path layer_file(int64_t layer) const;

  std::filesystem::path dir_;
  std::vector<std::filesystem::path> made_parents_;  // innermost first
  int lock_fd_ = -1;
  int64_t finished_ = 0;
};

// "<dir>.pbllm-state" beside the output folder `dir` (a trailing slash ignored).
std::filesystem::path state_dir_beside(const std::filesystem::path& output_dir);

// sha256 of the files that decide the quantized weights: config.json, the
// weight files and the tokenizer files, by name.
nlohmann::json model_file_hashes(const io::Checkpoint& checkpoint);

// What differs between a kept manifest and this run's, one item per
// difference ("--low_frac was 0.9, now 0.8"); empty when they agree.
std::vector<std::string> manifest_differences(const nlohmann::json& kept, const nlohmann::json& now);

}  // namespace pbllm::quant
