// The GPTQ-PB phases (kernels/gptq_pb_phases.h) compiled in this file with
// -march=native give, bit for bit, what the library's baseline x86-64 build of
// the host emulation gives. On a CPU with FMA, -march=native lets the compiler
// contract a * b + c into one rounding unless -ffp-contract=off is in force
// (the project compiles everything with it): then the CPU path would drift
// from the reference's unfused tensor ops and from the GPU kernel
// (--fmad=false). On a CPU without FMA the two builds cannot differ and the
// test passes trivially. Plain C++, no Torch: it builds in seconds.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "gptq_pb_block.h"
#include "pbllm/core/low_bit_methods.h"

namespace {

using namespace pbllm;
using namespace pbllm::kernels;

struct Buffers {
  std::vector<float> weights, U, high_scale, high_zero, low_mean, low_scale, low_zero, errors;
  std::unique_ptr<bool[]> binarized;
  std::vector<double> row_loss;
};

Buffers random_buffers(int64_t rows, int64_t columns, int64_t n, uint32_t seed) {
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

BlockProblem problem_of(Buffers& b, int64_t rows, int64_t columns, int64_t first, int64_t n,
                        const LowBitMethodTraits& traits) {
  return {b.weights.data(), b.binarized.get(), b.U.data(), rows, columns, first, n,
          {b.high_scale.data(), b.high_zero.data(), 255.0f},
          {traits.method, b.low_mean.data(), b.low_scale.data(), b.low_zero.data(),
           static_cast<float>(traits.levels > 1 ? traits.levels - 1 : 1)},
          true, b.errors.data(), b.row_loss.data()};
}

template <typename T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

TEST(PhasesNative, MarchNativeEqualsTheBaselineBuildBitForBit) {
  const int64_t rows = 40, columns = 96, first = 32, n = 64;
  for (const LowBitMethodTraits& traits : kLowBitMethods) {
    Buffers library = random_buffers(rows, columns, n, 5), native = random_buffers(rows, columns, n, 5);
    gptq_pb_block_emulated(problem_of(library, rows, columns, first, n, traits));  // the library's baseline build
    const BlockProblem p = problem_of(native, rows, columns, first, n, traits);      // this file's -march=native
    std::vector<float> u_block(n * n), buffer(n);
    load_u_block(p, u_block.data(), 0, 1);
    for (int64_t row = 0; row < rows; ++row) walk_row(p, u_block.data(), row, buffer.data());
    EXPECT_TRUE(same_bytes(native.weights, library.weights)) << traits.name << ": quantized weights";
    EXPECT_TRUE(same_bytes(native.errors, library.errors)) << traits.name << ": errors";
    EXPECT_TRUE(same_bytes(native.row_loss, library.row_loss)) << traits.name << ": row losses";
  }
}

}  // namespace
