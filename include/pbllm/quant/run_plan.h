// The plan printed before a quantization starts (docs/DESIGN.md, "The plan"):
// the peak memory the run will take, item by item, and a time estimate from
// its FLOP count and a GEMM rate measured on this machine, so a run that
// cannot fit fails in seconds instead of meeting the OOM killer at layer 27.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pbllm/model/decoder.h"
#include "pbllm/quant/layer_driver.h"

namespace pbllm::quant {

struct RunShape {
  int64_t windows = 0, seqlen = 0;  // calibration
  LinearSelection selection;
  int64_t blocksize = 128;
  InverseFactor inverse_factor = InverseFactor::one_cholesky;  // the reference's numbers held: README, "--inverse-factor"
  bool packed = false;              // --format pb: the packed Linears are held too
  int64_t eval_seqlen = 0;          // 0: no evaluation after quantizing
  at::ScalarType calibration_dtype = at::ScalarType::Undefined;  // GptqPbOptions::calibration_dtype
};

struct MemoryItem {
  std::string what;
  int64_t bytes = 0;
};

// The peak on one memory: the host, or a GPU.
struct MemoryPlan {
  std::string where;              // "host", "cuda:0"
  std::vector<MemoryItem> items;  // what makes up the peak
  int64_t peak_bytes = 0;         // their sum
  int64_t available_bytes = 0;    // MemAvailable, or the GPU's free memory
  int64_t in_use_bytes = 0;       // of the peak, already held now (not part of what is available)
  bool fits() const { return peak_bytes - in_use_bytes <= available_bytes; }
};

struct RunPlan {
  at::Device device = at::kCPU;
  std::vector<MemoryPlan> memories;  // the host; with a GPU, that GPU too
  double flops = 0;                  // forward passes, Hessians, factorisations, updates
  double gemm_flops_per_second = 0;
  double seconds() const { return gemm_flops_per_second > 0 ? flops / gemm_flops_per_second : 0; }
  // Lines for the terminal: the items, the peak against what is available, the time.
  std::string format() const;
};

// The plan of quantizing `model` (loaded, nothing computed yet) with `shape`,
// measured against this moment's resident set and available memory.
RunPlan plan_run(const model::DecoderModel& model, const RunShape& shape);

// The FLOPs of one pass of `windows` sequences of `seqlen` through layer
// `layer`: 2 per weight per token, plus the causal attention's products.
double layer_forward_flops(const model::DecoderModel& model, int64_t layer, int64_t windows, int64_t seqlen);

// A few GEMMs of `size` in `dtype` on `device`: FLOP/s with the current threads.
// 2048: products of 1024 ran ~12% below a 7B layer's GEMMs (310 against ~350
// GFLOP/s on 2 cores), so the forward beat its "floor".
double measure_gemm_rate(const at::Device& device, at::ScalarType dtype = at::kFloat, int64_t size = 2048);

}  // namespace pbllm::quant
