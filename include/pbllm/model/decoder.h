// The layer-wise interface the quantizer drives: embed(ids) -> hidden states,
// layer(i) on a batch of hidden states (reporting each Linear's input to an
// observer), head(hidden) -> logits; every Linear's weight reachable by name.
//
// Weights stay on the host in the checkpoint's dtype (memory-mapped where the
// file allows); what a call needs goes to the compute device and dtype
// (float32 on the CPU, fp16 on CUDA) as a "compute copy", kept or not by the
// model's Residency. A packed PB checkpoint's Linears stay packed and are
// decoded when used (kept only while their layer is held), so its resident
// weights are about the packed size.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "pbllm/io/checkpoint.h"
#include "pbllm/model/config.h"
#include "pbllm/pack/packed_checkpoint.h"
#include "pbllm/pack/packed_gemv.h"

namespace pbllm::model {

// Receives the input of each Linear as the layer runs: shape [batch, seq, in_features].
class LinearInputObserver {
 public:
  virtual ~LinearInputObserver() = default;
  virtual void observe(int64_t layer, const std::string& linear, const at::Tensor& input) = 0;
};

// The keys and values of the positions already run, per layer, so that
// generation runs one new token at a time: the prompt first (causal), then
// single tokens that attend to everything before them.
struct KvCache {
  std::vector<at::Tensor> keys, values;  // per layer: [batch, kv_heads, positions, head_dim]
  int64_t positions = 0;                 // tokens in the cache: the next token's position
};

// Which compute copies a model keeps:
//   whole_model  every copy once made (the default when all of them fit in half
//                the compute device's memory: RAM, or the GPU's free memory);
//   held_layers  only those of the layers held with hold_layer (the quantizer on
//                a GPU: the layer being quantized on the device, the rest in
//                host memory). Anything else is converted per use.
enum class Residency { whole_model, held_layers };

class DecoderModel {
 public:
  virtual ~DecoderModel() = default;

  // Builds the OPT or LLaMA model that config.json names. `device` is where the
  // forward runs ("cpu" or "cuda[:N]"), in `compute_dtype` (default:
  // compute_dtype_for(device); float32 on a GPU reproduces the CPU's numbers).
  static std::unique_ptr<DecoderModel> load(const io::Checkpoint& checkpoint, const at::Device& device,
                                            std::optional<at::ScalarType> compute_dtype = std::nullopt);

  const ModelConfig& config() const { return config_; }
  const at::Device& device() const { return device_; }
  at::ScalarType compute_dtype() const { return compute_dtype_; }
  int64_t num_layers() const { return config_.num_layers; }

  // ids: [batch, seq] int64 (any device) -> hidden [batch, seq, hidden] on device();
  // the first id is at position `first_position`.
  virtual at::Tensor embed(const at::Tensor& ids, int64_t first_position = 0) const = 0;
  // Runs decoder layer `index`: causal attention over the whole sequence, or
  // with `cache`, over the cached positions and the new ones (which it appends).
  virtual at::Tensor layer(int64_t index, const at::Tensor& hidden, LinearInputObserver* observer = nullptr,
                           KvCache* cache = nullptr) const = 0;
  // hidden -> float32 logits [batch, seq, vocab] on device().
  at::Tensor head(const at::Tensor& hidden) const;
  // -log p(target) [batch, seq] (float32) for hidden [batch, seq, hidden] and
  // targets [batch, seq], without the logits of every position at once: the
  // head runs on chunks of positions into one reused buffer, each chunk
  // reduced (log_softmax, the target's entry) as soon as it is made;
  // chunk_rows positions per chunk (0: about 2^23 logits' worth).
  at::Tensor target_nll(const at::Tensor& hidden, const at::Tensor& targets, int64_t chunk_rows = 0) const;
  // embed and every layer: the last hidden states; with `cache`, ids continue
  // the cached positions (after the prompt, one token at a time).
  at::Tensor hidden_states(const at::Tensor& ids, KvCache* cache = nullptr) const;
  // head(hidden_states(ids, cache)).
  at::Tensor forward(const at::Tensor& ids, KvCache* cache = nullptr) const;

  // The Linears of one decoder layer in execution order, grouped by the input
  // they read (q/k/v share one): {{"self_attn.q_proj", ...}, {"self_attn.o_proj"}, ...}.
  virtual std::vector<std::vector<std::string>> linear_input_groups() const = 0;
  // The same, flattened: e.g. "self_attn.q_proj".
  std::vector<std::string> linear_names() const;
  // The checkpoint name of a Linear's weight, e.g. "model.layers.3.self_attn.q_proj.weight".
  std::string linear_weight_name(int64_t layer, const std::string& linear) const;
  // The output embedding: lm_head, or the tied input embedding.
  virtual std::string head_weight_name() const = 0;
  // Every Linear's weight: the layers' in order, any outside them (OPT's
  // project_in / project_out), then the head's.
  std::vector<std::string> all_linear_weight_names() const;

  // The Linears held packed (a packed PB checkpoint); their entries in
  // weights() are shape-only placeholders (the meta device).
  const pack::PackedLinears& packed_linears() const { return packed_; }

  // Host tensors by checkpoint name, in the checkpoint's dtype.
  const std::map<std::string, at::Tensor>& weights() const { return weights_; }
  const at::Tensor& weight(const std::string& name) const;
  // Replaces a weight (same shape; stored in the original dtype), e.g. by its
  // quantized values; a kept compute copy is replaced too.
  void set_weight(const std::string& name, const at::Tensor& value);
  int64_t parameter_count() const;

  // Tensors used in place of stored ones, by checkpoint name: for each name
  // the model computes with (Linear weights and biases, the head's weight,
  // norms), `source(name)` is asked first, and an undefined answer means the
  // stored tensor. Its tensors must be on device() in compute_dtype(). QAT
  // makes its partially binarized weights this way, per forward, so autograd
  // follows them back to the trained latent weights. The input embedding is
  // always the stored table (for a tied head, `source` sees the table's name
  // only as the head's weight). An empty function removes the override.
  using ParameterSource = std::function<at::Tensor(const std::string& name)>;
  void set_parameter_source(ParameterSource source) { parameter_source_ = std::move(source); }

  Residency residency() const { return residency_; }
  // Switching to held_layers drops the copies of layers that are not held.
  void set_residency(Residency residency);
  // Makes the compute copies of layer `index` and keeps them until release_layer.
  void hold_layer(int64_t index);
  void release_layer(int64_t index);
  // Bytes of the compute copies kept now.
  int64_t resident_bytes() const;
  // Groups of Linears sharing an input (q/k/v, gate/up) whose stacked weight is
  // kept now, the members' compute copies being views of it.
  int64_t stacked_groups() const;

 protected:
  // `source` names the weights file in errors.
  DecoderModel(ModelConfig config, std::map<std::string, at::Tensor> weights, const at::Device& device,
               std::string source);

  // The head's input: the final norm (and OPT's project_out) of the last hidden states.
  virtual at::Tensor head_input(const at::Tensor& hidden) const = 0;
  // Linears outside the layers other than the head (OPT's project_in / project_out).
  virtual std::vector<std::string> outer_linear_weight_names() const { return {}; }

  // Checks that weight `name` exists with `shape`, naming the file otherwise.
  void require_weight(const std::string& name, const std::vector<int64_t>& shape) const;
  // require_weight for every Linear of every layer, from linear_shapes().
  void require_layer_weights(const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors) const;

  // A weight on the compute device in the compute dtype; an absent optional one
  // (a bias the config turns off) gives an undefined tensor.
  at::Tensor param(const std::string& name) const;
  at::Tensor optional_param(const std::string& name) const;
  // Rows `ids` ([batch, seq], any device) of the host table `name`, gathered on
  // the host so only [batch, seq, dim] crosses to the device; ids out of range throw.
  at::Tensor embedding_rows(const std::string& name, const at::Tensor& ids) const;
  // "<layers_prefix><index>." — where one layer's tensors live.
  std::string layer_prefix(int64_t index) const;
  // x @ W^T + b for the Linear `linear` of layer `index`, reporting x first.
  at::Tensor linear(int64_t index, const std::string& linear, const at::Tensor& x,
                    LinearInputObserver* observer) const;
  // The Linears `names` of layer `index` that read the same input (q/k/v,
  // gate/up) as one matrix product over their stacked weights, split back;
  // each is reported to the observer with x.
  std::vector<at::Tensor> linears_on_shared_input(int64_t index, const std::vector<std::string>& names,
                                                  const at::Tensor& x, LinearInputObserver* observer) const;
  // Causal softmax attention; q: [b, heads, t, d], k, v: [b, kv_heads, t, d] -> [b, t, heads * d].
  // With `cache`, k and v are appended to layer `index`'s cached ones first:
  // the prompt attends causally, a single later token to every position.
  at::Tensor attention(int64_t index, const at::Tensor& q, at::Tensor k, at::Tensor v, KvCache* cache) const;
  // [b, t, heads * d] -> [b, heads, t, d]
  static at::Tensor split_heads(const at::Tensor& x, int64_t heads);

  ModelConfig config_;
  std::map<std::string, at::Tensor> weights_;
  at::Device device_;
  at::ScalarType compute_dtype_;
  std::string source_;
  std::string layers_prefix_;  // set by the derived class: "model.layers." or "model.decoder.layers."

 private:
  // Sets the compute dtype (before any copy is made) and the residency its
  // copies allow: whole_model when they fit in half the device's memory.
  void set_compute_dtype(at::ScalarType dtype);
  // True when the host tensor itself is the compute copy (float32 on the CPU).
  bool used_as_is(const at::Tensor& host) const;
  bool in_layer(const std::string& name, int64_t index) const;
  // The compute-device, compute-dtype copy of weight `name` (a packed one decoded).
  at::Tensor make_compute_copy(const std::string& name, const at::Tensor& host) const;

  // The weights (and biases, if any) of Linears that read one input, stacked
  // along the output dimension, and each one's output width.
  struct StackedLinears {
    at::Tensor weight, bias;
    std::vector<int64_t> widths;
  };
  // The stacked Linears `names` of layer `index`: the kept stack, or a new one,
  // kept where all its members' compute copies are kept (their copies then
  // become views of it, so it costs no memory of its own). Weights used as is
  // (float32 on the CPU) have no copies: their stack is made per use.
  StackedLinears stacked_linears(int64_t index, const std::vector<std::string>& names) const;

  // Keeping copies matters: fresh half-gigabyte fp16->float32 buffers per CPU
  // forward cost more than the arithmetic, and host-to-GPU copies of a layer
  // for each of 128 calibration sequences would cost more than its GEMMs.
  Residency residency_ = Residency::held_layers;
  mutable std::mutex copies_mutex_;
  mutable std::map<std::string, at::Tensor> compute_copies_;
  // By layer prefix and member names, e.g. "model.layers.3.self_attn.q_proj+...".
  mutable std::map<std::string, StackedLinears> stacks_;
  pack::PackedLinears packed_;
  ParameterSource parameter_source_;
  // The GEMV layouts of packed Linears, made when a single token first needs them.
  mutable std::map<std::string, std::shared_ptr<const pack::PackedGemv>> gemvs_;
  // The packed GEMV for x of one token times the Linear at `prefix` (its
  // weight, plus its bias), or an undefined tensor where it does not apply (not
  // packed, not CPU, more tokens) and nothing was read.
  at::Tensor packed_product(const std::string& prefix, const at::Tensor& x) const;

 protected:
  // x times a Linear weight outside the layers (the head, OPT's project_in /
  // project_out: no bias); one token of a packed one (pbllm-qat packs them)
  // straight from its codes.
  at::Tensor outer_linear(const std::string& weight_name, const at::Tensor& x) const;
};

}  // namespace pbllm::model
