// Next-token negative log-likelihood of token sequences and greedy decoding.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pbllm/model/decoder.h"

namespace pbllm::eval {

struct NllSum {
  double nll = 0;      // sum over scored tokens of -log p(token | prefix)
  int64_t tokens = 0;  // tokens scored: every token but the first
  double mean() const { return tokens > 0 ? nll / static_cast<double>(tokens) : 0.0; }
};

// Scores ids[1:] given their prefixes in one forward pass (float64 sum).
NllSum sequence_nll(const model::DecoderModel& model, const std::vector<int64_t>& ids);
// The same for each row of ids [batch, seq], in one forward pass.
std::vector<NllSum> row_nll(const model::DecoderModel& model, const at::Tensor& ids);

// Perplexity by the reference's convention: the ids cut into floor(n / seqlen)
// windows of seqlen, each window's mean next-token NLL, exp of their mean.
struct PerplexityResult {
  double perplexity = 0;
  double stderr_perplexity = 0;  // delta method: perplexity * standard error of the mean window NLL
  int64_t tokens = 0;            // the whole id sequence, BOS included
  int64_t windows = 0;           // evaluated (fewer than available under max_windows)
  int64_t available_windows = 0;
  double seconds = 0;
};

// Evaluates the first `max_windows` windows (all when <= 0); `label` names the
// progress line.
PerplexityResult evaluate_perplexity(const model::DecoderModel& model, const std::vector<int32_t>& ids,
                                     int64_t seqlen, int64_t max_windows, const std::string& label);

// Appends `count` argmax tokens to `prompt`: the prompt once, then one token
// at a time through a KV cache (a packed model's Linears through the packed GEMV).
std::vector<int64_t> greedy_continue(const model::DecoderModel& model, std::vector<int64_t> prompt, int64_t count);

}  // namespace pbllm::eval
