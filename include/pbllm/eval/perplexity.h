// Next-token negative log-likelihood of token sequences and greedy decoding.
#pragma once

#include <cstdint>
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

// Appends `count` argmax tokens to `prompt` (a full forward per token: meant
// for checks and demos, not for serving).
std::vector<int64_t> greedy_continue(const model::DecoderModel& model, std::vector<int64_t> prompt, int64_t count);

}  // namespace pbllm::eval
