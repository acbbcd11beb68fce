// Random host buffers for one block of the GPTQ-PB column loop
// (kernels/gptq_pb_phases.h), for the plain-C++ tests of its phases. No Torch.
#pragma once

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "gptq_pb_phases.h"
#include "pbllm/core/low_bit_methods.h"

namespace pbllm::testing {

struct Buffers {
  std::vector<float> weights, U, high_scale, high_zero, low_mean, low_scale, low_zero, errors;
  std::unique_ptr<bool[]> binarized;
  std::vector<double> row_loss;
};

inline Buffers random_buffers(int64_t rows, int64_t columns, int64_t n, uint32_t seed) {
  std::mt19937 random(seed);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  Buffers b;
  for (int64_t i = 0; i < rows * columns; ++i) b.weights.push_back(normal(random));
  b.binarized.reset(new bool[rows * columns]);
  for (int64_t i = 0; i < rows * columns; ++i) b.binarized[i] = uniform(random) < 0.9f;
  for (int64_t i = 0; i < columns; ++i)
    for (int64_t j = 0; j < columns; ++j) b.U.push_back(j < i ? 0.0f : (j == i ? 1.0f + uniform(random) : 0.1f * normal(random)));
  for (int64_t r = 0; r < rows; ++r) {
    b.high_scale.push_back(0.01f + 0.01f * uniform(random));
    b.high_zero.push_back(static_cast<float>(random() % 256));
    b.low_mean.push_back(0.01f * normal(random));
    b.low_scale.push_back(0.1f * uniform(random) + 1e-3f);
    b.low_zero.push_back(static_cast<float>(random() % 4));
  }
  b.errors.assign(rows * n, 0.0f);
  b.row_loss.assign(rows, 0.0);
  return b;
}

inline kernels::BlockProblem problem_of(Buffers& b, int64_t rows, int64_t columns, int64_t first, int64_t n,
                                       const LowBitMethodTraits& traits, bool compensate = true) {
  return {b.weights.data(), b.binarized.get(), b.U.data(), rows, columns, first, n,
          {b.high_scale.data(), b.high_zero.data(), 255.0f},
          {traits.method, b.low_mean.data(), b.low_scale.data(), b.low_zero.data(),
           static_cast<float>(traits.levels > 1 ? traits.levels - 1 : 1)},
          compensate, b.errors.data(), b.row_loss.data()};
}

template <typename T>
inline bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

}  // namespace pbllm::testing
