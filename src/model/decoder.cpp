#include "pbllm/model/decoder.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/scaled_dot_product_attention.h>

#include <algorithm>
#include <set>

#include "pbllm/core/check.h"
#include "pbllm/io/mapped_file.h"
#include "pbllm/model/device.h"
#include "pbllm/model/llama.h"
#include "pbllm/model/opt.h"

namespace pbllm::model {

namespace {
// Up to this many tokens (generation, short prompts) a product is memory-bound.
constexpr int64_t kFewTokens = 16;
}  // namespace

std::unique_ptr<DecoderModel> DecoderModel::load(const io::Checkpoint& checkpoint, const at::Device& device,
                                                 std::optional<at::ScalarType> compute_dtype) {
  const ModelConfig config =
      ModelConfig::from_json(checkpoint.config(), (checkpoint.dir() / "config.json").string());
  pack::PackedLinears packed = pack::read_packed_linears(checkpoint);
  std::map<std::string, at::Tensor> weights;
  for (const std::string& name : checkpoint.tensor_names())
    if (!pack::is_packed_tensor_name(name)) weights[name] = checkpoint.tensor(name);
  for (const auto& [name, linear] : packed) {
    PBLLM_CHECK(!weights.count(name), checkpoint.weights_file(), ": '", name, "' is stored both packed and plain");
    weights[name] = at::empty({linear->rows, linear->columns}, at::TensorOptions().dtype(linear->dtype).device(at::kMeta));
  }
  const std::string source = str_cat(checkpoint.dir().string(), "/", checkpoint.weights_file());
  std::unique_ptr<DecoderModel> model;
  if (config.architecture == Architecture::opt) {
    model = std::make_unique<OptModel>(config, std::move(weights), device, source);
  } else {
    model = std::make_unique<LlamaModel>(config, std::move(weights), device, source);
  }
  const std::vector<std::string> names = model->all_linear_weight_names();
  std::set<std::string> linear_weights(names.begin(), names.end());
  // A tied head is the input embedding, which lookups read as stored.
  if (model->head_weight_name() != "lm_head.weight") linear_weights.erase(model->head_weight_name());
  for (const auto& [name, linear] : packed)
    PBLLM_CHECK(linear_weights.count(name), source, ": '", name, "' is stored as a packed Linear but is not a Linear ",
                "weight of the model (such as ", *linear_weights.begin(), ")");
  model->packed_ = std::move(packed);
  if (compute_dtype) model->set_compute_dtype(*compute_dtype);
  return model;
}

DecoderModel::DecoderModel(ModelConfig config, std::map<std::string, at::Tensor> weights, const at::Device& device,
                           std::string source)
    : config_(std::move(config)),
      weights_(std::move(weights)),
      device_(device),
      source_(std::move(source)) {
  set_compute_dtype(compute_dtype_for(device));
}

void DecoderModel::set_compute_dtype(at::ScalarType dtype) {
  PBLLM_CHECK(compute_copies_.empty() && stacks_.empty() && gemvs_.empty(),
              "set_compute_dtype after compute copies were made");
  PBLLM_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || (dtype == at::kHalf && device_.is_cuda()),
              "compute dtype ", at::toString(dtype), " on ", device_.str(), ": float32 or bfloat16 anywhere, float16 on CUDA");
  compute_dtype_ = dtype;
  int64_t copy_bytes = 0;
  for (const auto& [name, tensor] : weights_)
    if (!used_as_is(tensor)) copy_bytes += tensor.numel() * at::elementSize(compute_dtype_);
  residency_ = copy_bytes <= device_memory_bytes(device_) / 2 ? Residency::whole_model : Residency::held_layers;
}

void DecoderModel::require_weight(const std::string& name, const std::vector<int64_t>& shape) const {
  auto found = weights_.find(name);
  PBLLM_CHECK(found != weights_.end(), source_, ": tensor '", name, "' is missing");
  PBLLM_CHECK(found->second.sizes() == at::IntArrayRef(shape), source_, ": tensor '", name, "' has shape ",
              found->second.sizes(), " but config.json implies ", at::IntArrayRef(shape));
  const at::ScalarType dtype = found->second.scalar_type();
  PBLLM_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16, source_, ": tensor '", name,
              "' has dtype ", at::toString(dtype), " (expected F32, F16 or BF16)");
}

void DecoderModel::require_layer_weights(
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors) const {
  for (int64_t i = 0; i < num_layers(); ++i)
    for (const auto& [name, shape] : tensors) require_weight(layer_prefix(i) + name, shape);
}

at::Tensor DecoderModel::hidden_states(const at::Tensor& ids, KvCache* cache) const {
  at::Tensor hidden = embed(ids, cache ? cache->positions : 0);
  for (int64_t i = 0; i < num_layers(); ++i) hidden = layer(i, hidden, nullptr, cache);
  if (cache) cache->positions += ids.size(1);
  return hidden;
}

at::Tensor DecoderModel::forward(const at::Tensor& ids, KvCache* cache) const {
  return head(hidden_states(ids, cache));
}

at::Tensor DecoderModel::head(const at::Tensor& hidden) const {
  return outer_linear(head_weight_name(), head_input(hidden)).to(at::kFloat);
}

at::Tensor DecoderModel::outer_linear(const std::string& weight_name, const at::Tensor& x) const {
  const std::string prefix = weight_name.substr(0, weight_name.size() - std::string(".weight").size());
  if (!parameter_source_)
    if (at::Tensor y = packed_product(prefix, x); y.defined()) return y;
  return at::linear(x, param(weight_name));
}

at::Tensor DecoderModel::target_nll(const at::Tensor& hidden, const at::Tensor& targets, int64_t chunk_rows) const {
  PBLLM_CHECK(hidden.dim() == 3 && targets.sizes() == hidden.sizes().slice(0, 2), "target_nll: hidden ",
              hidden.sizes(), " and targets ", targets.sizes(), " do not match");
  const at::Tensor input = head_input(hidden);  // OPT's project_out may narrow it
  const at::Tensor x = input.reshape({-1, input.size(-1)});
  const at::Tensor w = param(head_weight_name());
  const at::Tensor t = targets.reshape({-1, 1}).to(device_, at::kLong);
  PBLLM_CHECK(t.numel() == 0 || (t.min().item<int64_t>() >= 0 && t.max().item<int64_t>() < w.size(0)),
              "target id out of range [0, ", w.size(0), ")");
  // About 2^23 logits (32 MiB in float32) per chunk: far below a window's
  // [2048, vocab] (400 MB for a 49152-word vocabulary), rows enough for the GEMM.
  const int64_t rows = x.size(0);
  const int64_t chunk =
      std::max<int64_t>(1, std::min(rows, chunk_rows > 0 ? chunk_rows : std::max<int64_t>(64, (int64_t{1} << 23) / w.size(0))));
  at::Tensor logits = at::empty({chunk, w.size(0)}, x.options());
  at::Tensor nll = at::empty({rows}, x.options().dtype(at::kFloat));
  for (int64_t first = 0; first < rows; first += chunk) {
    const int64_t count = std::min(chunk, rows - first);
    at::Tensor block = logits.narrow(0, 0, count);
    at::mm_out(block, x.narrow(0, first, count), w.t());
    // As head() then log_softmax over the whole logits, row for row the same
    // roundings (logsumexp minus the logit differs in the last bits: 1e-5 of
    // SmolLM2's perplexity).
    const at::Tensor log_probs = at::log_softmax(block.to(at::kFloat), 1);
    nll.narrow(0, first, count).copy_(log_probs.gather(1, t.narrow(0, first, count)).squeeze(1).neg());
  }
  return nll.view(targets.sizes());
}

std::string DecoderModel::layer_prefix(int64_t index) const { return str_cat(layers_prefix_, index, "."); }

std::string DecoderModel::linear_weight_name(int64_t layer, const std::string& linear) const {
  return str_cat(layer_prefix(layer), linear, ".weight");
}

const at::Tensor& DecoderModel::weight(const std::string& name) const {
  auto found = weights_.find(name);
  PBLLM_CHECK(found != weights_.end(), "the model has no tensor '", name, "'");
  return found->second;
}

void DecoderModel::set_weight(const std::string& name, const at::Tensor& value) {
  const at::Tensor& current = weight(name);
  PBLLM_CHECK(!packed_.count(name), "'", name, "' is packed: quantize the original checkpoint, not a packed one");
  PBLLM_CHECK(current.sizes() == value.sizes(), "set_weight '", name, "': shape ", value.sizes(), " differs from ",
              current.sizes());
  at::Tensor& stored = weights_[name];
  const at::Tensor replaced = stored;
  stored = value.to(at::kCPU, current.scalar_type()).contiguous();
  // The checkpoint's pages of the value replaced (a quantized Linear's original
  // weight) are not needed again: given back, or they stay resident beside the
  // new value, most of a big layer's memory (reading them later is still right).
  // Its own bytes only (a view's storage may hold weights still in use), and
  // never where the new value is the same memory.
  if (!replaced.is_meta() && replaced.is_contiguous() && replaced.data_ptr() != nullptr &&
      !stored.is_alias_of(replaced))
    io::MappedFile::page_out(replaced.data_ptr(), replaced.nbytes());
  const std::lock_guard<std::mutex> lock(copies_mutex_);
  // From the stored value, so the copy is what a fresh conversion would give;
  // in place, because a kept copy may be a view of its group's stacked weight.
  if (auto kept = compute_copies_.find(name); kept != compute_copies_.end())
    kept->second.copy_(to_compute(stored, device_, compute_dtype_));
}

bool DecoderModel::used_as_is(const at::Tensor& host) const {
  return device_.is_cpu() && !host.is_meta() && host.scalar_type() == compute_dtype_;
}

at::Tensor DecoderModel::make_compute_copy(const std::string& name, const at::Tensor& host) const {
  if (auto packed = packed_.find(name); packed != packed_.end())
    return to_compute(pack::decode_linear(*packed->second), device_, compute_dtype_);
  return to_compute(host, device_, compute_dtype_);
}

bool DecoderModel::in_layer(const std::string& name, int64_t index) const {
  return name.rfind(layer_prefix(index), 0) == 0;
}

void DecoderModel::set_residency(Residency residency) {
  residency_ = residency;
  if (residency != Residency::held_layers) return;
  const std::lock_guard<std::mutex> lock(copies_mutex_);
  compute_copies_.clear();
  stacks_.clear();
}

void DecoderModel::hold_layer(int64_t index) {
  const std::lock_guard<std::mutex> lock(copies_mutex_);
  for (const auto& [name, host] : weights_)
    if (in_layer(name, index) && !used_as_is(host) && !compute_copies_.count(name))
      compute_copies_[name] = make_compute_copy(name, host);
}

void DecoderModel::release_layer(int64_t index) {
  if (residency_ == Residency::whole_model) return;
  const std::lock_guard<std::mutex> lock(copies_mutex_);
  for (auto it = compute_copies_.begin(); it != compute_copies_.end();)
    it = in_layer(it->first, index) ? compute_copies_.erase(it) : std::next(it);
  for (auto it = stacks_.begin(); it != stacks_.end();) it = in_layer(it->first, index) ? stacks_.erase(it) : std::next(it);
}

int64_t DecoderModel::resident_bytes() const {
  const std::lock_guard<std::mutex> lock(copies_mutex_);
  int64_t bytes = 0;
  for (const auto& [name, copy] : compute_copies_) bytes += copy.numel() * copy.element_size();
  return bytes;
}

int64_t DecoderModel::stacked_groups() const {
  const std::lock_guard<std::mutex> lock(copies_mutex_);
  return static_cast<int64_t>(stacks_.size());
}

std::vector<std::string> DecoderModel::linear_names() const {
  std::vector<std::string> names;
  for (const auto& group : linear_input_groups()) names.insert(names.end(), group.begin(), group.end());
  return names;
}

std::vector<std::string> DecoderModel::all_linear_weight_names() const {
  std::vector<std::string> names;
  for (int64_t layer = 0; layer < num_layers(); ++layer)
    for (const std::string& linear : linear_names()) names.push_back(linear_weight_name(layer, linear));
  for (const std::string& name : outer_linear_weight_names()) names.push_back(name);
  names.push_back(head_weight_name());
  return names;
}

int64_t DecoderModel::parameter_count() const {
  int64_t count = 0;
  for (const auto& [name, tensor] : weights_) count += tensor.numel();
  return count;
}

at::Tensor DecoderModel::param(const std::string& name) const {
  if (parameter_source_)
    if (at::Tensor given = parameter_source_(name); given.defined()) return given;
  const at::Tensor& host = weight(name);
  if (used_as_is(host)) return host;
  const std::lock_guard<std::mutex> lock(copies_mutex_);
  if (auto kept = compute_copies_.find(name); kept != compute_copies_.end()) return kept->second;
  at::Tensor copy = make_compute_copy(name, host);
  // Packed Linears are decoded per use: kept, they would take the float32 model's memory.
  if (residency_ == Residency::whole_model && !packed_.count(name)) compute_copies_[name] = copy;
  return copy;
}

at::Tensor DecoderModel::optional_param(const std::string& name) const {
  return weights_.count(name) ? param(name) : at::Tensor();
}

at::Tensor DecoderModel::embedding_rows(const std::string& name, const at::Tensor& ids) const {
  PBLLM_CHECK(ids.dim() == 2, "token ids must be [batch, seq], got ", ids.sizes());
  const at::Tensor& table = weight(name);
  const at::Tensor host_ids = ids.to(at::kCPU, at::kLong).flatten();
  PBLLM_CHECK(host_ids.numel() == 0 ||
                  (host_ids.min().item<int64_t>() >= 0 && host_ids.max().item<int64_t>() < table.size(0)),
              "token id out of range [0, ", table.size(0), ") for ", name);
  return to_compute(table.index_select(0, host_ids), device_, compute_dtype_).view({ids.size(0), ids.size(1), -1});
}

at::Tensor DecoderModel::packed_product(const std::string& prefix, const at::Tensor& x) const {
  const std::string name = prefix + ".weight";
  auto packed = packed_.find(name);
  if (packed == packed_.end() || !device_.is_cpu() || x.numel() != x.size(-1) ||
      !pack::PackedGemv::supports(*packed->second))
    return at::Tensor();
  std::shared_ptr<const pack::PackedGemv> gemv;
  {
    const std::lock_guard<std::mutex> lock(copies_mutex_);
    auto& kept = gemvs_[name];
    if (!kept) kept = std::make_shared<const pack::PackedGemv>(*packed->second);
    gemv = kept;
  }
  at::Tensor y = (*gemv)(x.reshape({-1}).to(at::kFloat)).to(x.scalar_type());
  if (const at::Tensor bias = optional_param(prefix + ".bias"); bias.defined()) y.add_(bias);
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = gemv->rows();
  return y.view(shape);
}

at::Tensor DecoderModel::linear(int64_t index, const std::string& linear, const at::Tensor& x,
                                LinearInputObserver* observer) const {
  if (observer != nullptr) observer->observe(index, linear, x);
  const std::string prefix = str_cat(layer_prefix(index), linear);
  // One token (generation): straight from the packed codes.
  if (!parameter_source_)
    if (at::Tensor y = packed_product(prefix, x); y.defined()) return y;
  return at::linear(x, param(prefix + ".weight"), optional_param(prefix + ".bias"));
}

std::vector<at::Tensor> DecoderModel::linears_on_shared_input(int64_t index, const std::vector<std::string>& names,
                                                             const at::Tensor& x,
                                                             LinearInputObserver* observer) const {
  if (observer != nullptr)
    for (const std::string& name : names) observer->observe(index, name, x);
  // One token of a packed model: each Linear straight from its packed codes.
  std::vector<at::Tensor> outputs;
  for (const std::string& name : names) {
    if (parameter_source_) break;
    at::Tensor y = packed_product(str_cat(layer_prefix(index), name), x);
    if (!y.defined()) break;
    outputs.push_back(std::move(y));
  }
  if (outputs.size() == names.size()) return outputs;
  // Weights used as is are never stacked for keeps; for a few tokens the
  // product is memory-bound and a stack made per use would triple its traffic.
  const bool few_tokens = x.numel() <= kFewTokens * x.size(-1);
  const auto as_is = [&](const std::string& name) { return used_as_is(weight(str_cat(layer_prefix(index), name, ".weight"))); };
  if (few_tokens && std::all_of(names.begin(), names.end(), as_is)) {
    outputs.clear();
    for (const std::string& name : names) outputs.push_back(linear(index, name, x, nullptr));
    return outputs;
  }
  // Otherwise one wide GEMM, which uses the cores better than several narrow ones.
  const StackedLinears stack = stacked_linears(index, names);
  return at::linear(x, stack.weight, stack.bias).split_with_sizes(stack.widths, -1);
}

DecoderModel::StackedLinears DecoderModel::stacked_linears(int64_t index, const std::vector<std::string>& names) const {
  std::string key = layer_prefix(index);
  for (const std::string& name : names) key += (&name == &names.front() ? "" : "+") + name;
  if (!parameter_source_) {
    const std::lock_guard<std::mutex> lock(copies_mutex_);
    if (auto kept = stacks_.find(key); kept != stacks_.end()) return kept->second;
  }
  StackedLinears stack;
  std::vector<std::string> weight_names, bias_names;
  std::vector<at::Tensor> weights, biases;
  for (const std::string& name : names) {
    const std::string prefix = str_cat(layer_prefix(index), name);
    weight_names.push_back(prefix + ".weight");
    weights.push_back(param(weight_names.back()));
    stack.widths.push_back(weights.back().size(0));
    if (at::Tensor bias = optional_param(prefix + ".bias"); bias.defined()) {
      bias_names.push_back(prefix + ".bias");
      biases.push_back(std::move(bias));
    }
  }
  PBLLM_CHECK(biases.empty() || biases.size() == names.size(), "layer ", index,
              ": some of the Linears sharing an input have a bias and some do not");
  stack.weight = at::cat(weights);
  if (!biases.empty()) stack.bias = at::cat(biases);

  const std::lock_guard<std::mutex> lock(copies_mutex_);
  const auto kept_copy = [&](const std::string& name) { return compute_copies_.count(name) > 0; };
  // Not kept where a member's copy is not (used as is, packed, a layer not held)
  // or where the members come from the parameter source (made per forward).
  if (parameter_source_ || !std::all_of(weight_names.begin(), weight_names.end(), kept_copy) ||
      !std::all_of(bias_names.begin(), bias_names.end(), kept_copy))
    return stack;
  if (auto [kept, inserted] = stacks_.emplace(key, stack); !inserted) return kept->second;
  // The members' copies become views of the stack: one stored copy, which
  // set_weight refreshes in place.
  int64_t row = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    compute_copies_[weight_names[i]] = stack.weight.narrow(0, row, stack.widths[i]);
    if (stack.bias.defined()) compute_copies_[bias_names[i]] = stack.bias.narrow(0, row, stack.widths[i]);
    row += stack.widths[i];
  }
  return stack;
}

at::Tensor DecoderModel::split_heads(const at::Tensor& x, int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, -1}).transpose(1, 2);
}

at::Tensor DecoderModel::attention(int64_t index, const at::Tensor& q, at::Tensor k, at::Tensor v,
                                   KvCache* cache) const {
  bool causal = true;
  if (cache != nullptr) {
    cache->keys.resize(num_layers());
    cache->values.resize(num_layers());
    if (cache->keys[index].defined()) {
      PBLLM_CHECK(q.size(2) == 1, "after the prompt, the cache takes one token at a time (got ", q.size(2), ")");
      k = at::cat({cache->keys[index], k}, 2);
      v = at::cat({cache->values[index], v}, 2);
      causal = false;  // the new token sees every earlier position
    }
    cache->keys[index] = k;
    cache->values[index] = v;
  }
  // enable_gqa lets each group of query heads share its key/value head without
  // materialising repeated K and V (HF's repeat_kv gives the same numbers).
  const at::Tensor out = at::scaled_dot_product_attention(q, k, v, {}, 0.0, causal, std::nullopt,
                                                          /*enable_gqa=*/q.size(1) != k.size(1));
  return out.transpose(1, 2).reshape({q.size(0), q.size(2), -1});
}

}  // namespace pbllm::model
