#include "pbllm/quant/run_plan.h"

#include <ATen/ops/mm.h>
#include <ATen/ops/randn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "pbllm/core/check.h"
#include "pbllm/quant/hessian.h"
#include "pbllm/model/device.h"

namespace pbllm::quant {
namespace {

constexpr double kPackedBytesPerWeight = 0.3;  // ~2.4 bits, measured (README, "The packed PB checkpoint")

// A byte count computed in double (absurd --nsamples / --seqlen must not overflow), saturated.
int64_t saturated(double bytes) { return static_cast<int64_t>(std::min(bytes, 4e18)); }

int64_t bytes_of(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

// The embedding and head tables ([vocab, *]): gathered by rows, read whole only by the head.
bool is_table(const model::DecoderModel& model, const at::Tensor& weight) {
  return weight.dim() == 2 && weight.size(0) == model.config().vocab_size;
}

// What one layer needs, from the model's own tensors.
struct LayerNeeds {
  int64_t weight_bytes = 0;      // every tensor of the layer, as stored
  int64_t weight_numel = 0;
  int64_t selected_bytes = 0;    // the Linears to quantize, as stored
  int64_t selected_weights = 0;
  int64_t hessian_bytes = 0;     // one float32 Hessian per distinct input of a selected Linear
  int64_t widest_input = 0;      // the largest Hessian's side
  int64_t gptq_bytes = 0;        // the largest Linear's GPTQ-PB working set
  double gptq_flops = 0, hessian_flops = 0;
};

LayerNeeds layer_needs(const model::DecoderModel& model, int64_t layer, const RunShape& shape) {
  LayerNeeds needs;
  const double tokens = static_cast<double>(shape.windows) * static_cast<double>(shape.seqlen);
  for (const auto& group : model.linear_input_groups()) {
    bool any_selected = false;
    for (const std::string& linear : group) {
      const at::Tensor& w = model.weight(model.linear_weight_name(layer, linear));
      if (!shape.selection.selected(layer, linear)) continue;
      any_selected = true;
      const auto r = static_cast<double>(w.size(0)), c = static_cast<double>(w.size(1));
      needs.selected_bytes += bytes_of(w);
      needs.selected_weights += w.numel();
      // W and its float32 result, the masks; H's clone, the damped copy, L, H^-1, U and U made contiguous.
      needs.gptq_bytes = std::max<int64_t>(needs.gptq_bytes, static_cast<int64_t>(4 * (6 * c * c + 2 * r * c) + 2 * r * c));
      for (int64_t first = 0; first < w.size(1); first += shape.blocksize) {
        const int64_t n = std::min(shape.blocksize, w.size(1) - first);
        needs.gptq_flops += column_loop_flops(w.size(0), n) + trailing_gemm_flops(w.size(0), n, w.size(1) - first - n);
      }
    }
    if (!any_selected) continue;
    const int64_t c = model.weight(model.linear_weight_name(layer, group[0])).size(1);
    // Once per Hessian (its Linears share U).
    needs.gptq_flops += factorisation_flops(c, shape.inverse_factor);
    needs.hessian_bytes += 4 * c * c;
    needs.widest_input = std::max(needs.widest_input, c);
    needs.hessian_flops += hessian_update_flops(tokens, c, model.device());
  }
  const std::string prefix = model.linear_weight_name(layer, model.linear_names()[0]);
  const std::string layer_prefix = prefix.substr(0, prefix.find(model.linear_names()[0]));
  for (const auto& [name, w] : model.weights())
    if (name.rfind(layer_prefix, 0) == 0) {
      needs.weight_bytes += bytes_of(w);
      needs.weight_numel += w.numel();
    }
  return needs;
}

std::string gib(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f GiB", static_cast<double>(bytes) / (1 << 30));
  return text;
}

std::string format_duration(double seconds) {
  char text[32];
  if (seconds < 90) std::snprintf(text, sizeof text, "%.0f s", seconds);
  else if (seconds < 5400) std::snprintf(text, sizeof text, "%.0f min", seconds / 60);
  else std::snprintf(text, sizeof text, "%.1f h", seconds / 3600);
  return text;
}

}  // namespace

double layer_forward_flops(const model::DecoderModel& model, int64_t layer, int64_t windows, int64_t seqlen) {
  double linear_weights = 0;
  for (const std::string& linear : model.linear_names())
    linear_weights += static_cast<double>(model.weight(model.linear_weight_name(layer, linear)).numel());
  const double n = static_cast<double>(windows), length = static_cast<double>(seqlen);
  return 2 * n * length * linear_weights + 2 * n * length * length * static_cast<double>(model.config().hidden_size);
}

double measure_gemm_rate(const at::Device& device, at::ScalarType dtype, int64_t size) {
  const auto options = at::TensorOptions().dtype(dtype).device(device);
  const at::Tensor a = at::randn({size, size}, options), b = at::randn({size, size}, options);
  at::Tensor c = at::mm(a, b);  // warm-up: threads, caches, cuBLAS handles
  c.sum().item<float>();
  constexpr int kRepeats = 4;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kRepeats; ++i) c = at::mm(a, b);
  c.sum().item<float>();  // waits for a GPU
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return kRepeats * 2.0 * static_cast<double>(size * size * size) / std::max(seconds, 1e-9);
}

RunPlan plan_run(const model::DecoderModel& model, const RunShape& shape) {
  RunPlan plan;
  plan.device = model.device();
  const auto& config = model.config();
  const bool gpu = model.device().is_cuda();
  const int64_t compute_size = at::elementSize(model.compute_dtype());
  const double n = static_cast<double>(shape.windows), length = static_cast<double>(shape.seqlen);
  const double tokens = n * length;

  // Outside the layers: the embedding table (the calibration's rows gathered from it), and for an
  // evaluation the head (untied: a second table), read whole.
  int64_t outside_layers = 0, table_bytes = 0, tables_bytes = 0, head_numel = 0;
  for (const auto& [name, w] : model.weights()) {
    if (name.find(".layers.") != std::string::npos) continue;
    if (is_table(model, w)) {
      table_bytes = std::max(table_bytes, bytes_of(w));
      tables_bytes += bytes_of(w);
      head_numel = std::max(head_numel, w.numel());
    } else {
      outside_layers += bytes_of(w);
    }
  }
  LayerNeeds total, largest;
  int64_t largest_layer_numel = 0;
  for (int64_t layer = 0; layer < model.num_layers(); ++layer) {
    const LayerNeeds needs = layer_needs(model, layer, shape);
    total.weight_bytes += needs.weight_bytes;
    total.weight_numel += needs.weight_numel;
    total.selected_bytes += needs.selected_bytes;
    total.selected_weights += needs.selected_weights;
    largest.hessian_bytes = std::max(largest.hessian_bytes, needs.hessian_bytes);
    largest.widest_input = std::max(largest.widest_input, needs.widest_input);
    largest.gptq_bytes = std::max(largest.gptq_bytes, needs.gptq_bytes);
    largest_layer_numel = std::max(largest_layer_numel, needs.weight_numel);
    // Forward passes: with the original weights (Hessians) and the quantized ones. (A resumed run
    // does less: the plan comes before the state folder is read.)
    const bool quantized_now = needs.selected_weights > 0;
    plan.flops += layer_forward_flops(model, layer, shape.windows, shape.seqlen) * (quantized_now ? 2 : 1);
    if (quantized_now) plan.flops += needs.hessian_flops + needs.gptq_flops;
  }

  // One sample through a layer: the residual stream, norms, q / k / v / attention / o, the MLP's intermediates.
  const int64_t forward_bytes =
      saturated(length * static_cast<double>(12 * config.hidden_size + 4 * config.intermediate_size) * compute_size);
  const double held_size = shape.calibration_dtype == at::ScalarType::Undefined
                               ? static_cast<double>(compute_size)
                               : static_cast<double>(at::elementSize(shape.calibration_dtype));
  const int64_t activations = saturated(2 * tokens * static_cast<double>(config.hidden_size) * held_size);
  const int64_t accumulate = 4 * largest.widest_input * largest.widest_input +
                             saturated(4 * length * static_cast<double>(largest.widest_input));
  const int64_t layer_work = std::max(forward_bytes + accumulate, largest.gptq_bytes) + largest.hessian_bytes;
  // The evaluation's logits: target_nll's chunk of positions (about 2^23 logits), its
  // float32 log_softmax and one more for the conversion on a GPU.
  const double chunk_rows = std::min(static_cast<double>(shape.eval_seqlen),
                                     std::max(64.0, static_cast<double>(int64_t{1} << 23) / config.vocab_size));
  const int64_t eval_bytes = shape.eval_seqlen > 0
      ? saturated(3.0 * chunk_rows * static_cast<double>(config.vocab_size) * 4) +
            forward_bytes + (model.compute_dtype() == at::kFloat && !gpu ? 0 : head_numel * compute_size)
      : 0;
  const int64_t packed = static_cast<int64_t>(kPackedBytesPerWeight * static_cast<double>(total.selected_weights) *
                                              (shape.packed ? 1 : 0));

  // The host: the process as it is now, the checkpoint's pages as they are read (mapped), the quantized
  // Linears' new values, and on the CPU the float32 compute copies and all the work.
  MemoryPlan host;
  host.where = "host";
  host.available_bytes = model::available_memory_bytes(at::kCPU);
  host.in_use_bytes = model::resident_memory_bytes();
  host.items.push_back({"process now (libraries, tokenizer, mapped headers)", host.in_use_bytes});
  host.items.push_back(
      {"checkpoint pages read", total.weight_bytes + outside_layers + (shape.eval_seqlen ? tables_bytes : table_bytes)});
  host.items.push_back({"quantized Linears' values", total.selected_bytes});
  if (packed) host.items.push_back({"packed Linears", packed});
  MemoryPlan device;
  device.where = model.device().str();
  device.available_bytes = model::available_memory_bytes(model.device());
  MemoryPlan& work = gpu ? device : host;
  bool copies = false;
  for (const auto& [name, w] : model.weights()) copies = copies || w.scalar_type() != model.compute_dtype();
  if (copies || gpu) {
    // On a GPU the layer driver holds one layer at a time (quant/layer_driver.cpp, LayerResidency).
    const bool every_layer = !gpu && model.residency() == model::Residency::whole_model;
    work.items.push_back({str_cat(model::compute_dtype_name(model.compute_dtype()), " compute copies (",
                                  every_layer ? "every layer" : "one layer", ")"),
                          (every_layer ? total.weight_numel : largest_layer_numel) * compute_size});
  }
  work.items.push_back({"calibration activations (a layer's inputs and outputs)", activations});
  work.items.push_back({"Hessians, GPTQ-PB and forward working set (the largest layer)", layer_work});
  if (eval_bytes > layer_work + activations)
    work.items.push_back({"evaluation beyond that (logits, the head)", eval_bytes - layer_work - activations});
  for (MemoryPlan* memory : {&host, &device}) {
    double peak = 0;
    for (const MemoryItem& item : memory->items) peak += static_cast<double>(item.bytes);
    memory->peak_bytes = saturated(peak);
    if (!memory->items.empty()) plan.memories.push_back(*memory);
  }
  plan.gemm_flops_per_second = measure_gemm_rate(model.device());
  return plan;
}

std::string RunPlan::format() const {
  std::string text;
  char line[256];
  for (const MemoryPlan& memory : memories) {
    for (const MemoryItem& item : memory.items) {
      std::snprintf(line, sizeof line, "plan  %-6s %-62s %10s\n", memory.where.c_str(), item.what.c_str(),
                    gib(item.bytes).c_str());
      text += line;
    }
    std::snprintf(line, sizeof line, "plan  %-6s peak %s of %s available%s\n", memory.where.c_str(),
                  gib(memory.peak_bytes).c_str(), gib(memory.available_bytes + memory.in_use_bytes).c_str(),
                  memory.fits() ? "" : "  -- DOES NOT FIT");
    text += line;
  }
  std::snprintf(line, sizeof line, "plan  time   %.3g TFLOP at %.0f GFLOP/s (measured GEMM rate): about %s\n",
                flops / 1e12, gemm_flops_per_second / 1e9, format_duration(seconds()).c_str());
  text += line;
  return text;
}

}  // namespace pbllm::quant
