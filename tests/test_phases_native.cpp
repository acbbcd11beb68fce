// The GPTQ-PB phases (kernels/gptq_pb_phases.h) compiled in this file with
// -march=native give, bit for bit, what the library's baseline x86-64 build of
// the host emulation gives. On a CPU with FMA, -march=native lets the compiler
// contract a * b + c into one rounding unless -ffp-contract=off is in force
// (the project compiles everything with it): then the CPU path would drift
// from the reference's unfused tensor ops and from the GPU kernel
// (--fmad=false). On a CPU without FMA the two builds cannot differ and the
// test passes trivially. Plain C++, no Torch: it builds in seconds.
#include <gtest/gtest.h>

#include <vector>

#include "block_buffers.h"
#include "gptq_pb_block.h"
#include "pbllm/core/low_bit_methods.h"

namespace {

using namespace pbllm;
using namespace pbllm::kernels;
using namespace pbllm::testing;

TEST(PhasesNative, MarchNativeEqualsTheBaselineBuildBitForBit) {
  const int64_t rows = 40, columns = 96, first = 32, n = 64;
  for (const LowBitMethodTraits& traits : kLowBitMethods) {
    Buffers library = random_buffers(rows, columns, n, 5), native = random_buffers(rows, columns, n, 5);
    gptq_pb_block_emulated(problem_of(library, rows, columns, first, n, traits), BlockLaunch{});  // the library's baseline build
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
