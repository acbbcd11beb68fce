// The block kernel's launch shapes (kernels/gptq_pb_block.h) on its host
// emulation: every shape (threads per block, lanes per row) walks the rows to
// the same bits as the one-thread walk the CPU path runs (walk_row), and the
// shape chosen for a problem fills the GPU it is chosen for. Plain C++, no
// Torch: it builds in seconds. The emulation runs each column's steps for all
// threads in turn, so it cannot show a race between lanes (the error slots'
// double buffering); only the GPU test against it can
// (GptqPb.CudaBlockKernelEqualsItsHostEmulationBitForBit).
#include <gtest/gtest.h>

#include <vector>

#include "block_buffers.h"
#include "gptq_pb_block.h"
#include "pbllm/core/check.h"

namespace {

using namespace pbllm;
using namespace pbllm::kernels;
using namespace pbllm::testing;

// walk_row over every row, as run_block_on_cpu's per-row loop does.
void walk_every_row(const BlockProblem& p) {
  std::vector<float> u_block(p.n * p.n), buffer(p.n);
  load_u_block(p, u_block.data(), 0, 1);
  for (int64_t row = 0; row < p.rows; ++row) walk_row(p, u_block.data(), row, buffer.data());
}

// 77 rows: no shape divides them, so every shape has a partial last block
// with spare threads; n = 37 is no multiple of any lane count above 1, and
// n = 1 leaves all lanes but one idle.
TEST(BlockLaunch, EveryShapeGivesTheOneThreadWalksBits) {
  const int64_t rows = 77, columns = 150;
  int shapes = 0;
  for (const auto [first, n] : {std::pair<int64_t, int64_t>{0, 1}, {40, 37}, {22, 128}})
    for (const LowBitMethodTraits& traits : kLowBitMethods)
      for (const bool compensate : {true, false}) {
        Buffers expected = random_buffers(rows, columns, n, 11);
        walk_every_row(problem_of(expected, rows, columns, first, n, traits, compensate));
        for (const int threads : {32, 64, 128, 256})
          for (int lanes = 1; lanes <= kGptqPbMaxLanes; lanes *= 2) {
            Buffers got = random_buffers(rows, columns, n, 11);
            gptq_pb_block_emulated(problem_of(got, rows, columns, first, n, traits, compensate), {threads, lanes});
            const std::string label = std::string(traits.name) + " n " + std::to_string(n) + " threads " +
                                      std::to_string(threads) + " lanes " + std::to_string(lanes) +
                                      (compensate ? "" : " rtn");
            EXPECT_TRUE(same_bytes(got.weights, expected.weights)) << label << ": quantized weights";
            EXPECT_TRUE(same_bytes(got.errors, expected.errors)) << label << ": errors";
            EXPECT_TRUE(same_bytes(got.row_loss, expected.row_loss)) << label << ": row losses";
            ++shapes;
          }
        // The walk changed the block: the comparisons above compare something.
        EXPECT_FALSE(same_bytes(expected.weights, random_buffers(rows, columns, n, 11).weights)) << traits.name;
      }
  EXPECT_EQ(shapes, 3 * static_cast<int>(std::size(kLowBitMethods)) * 2 * 4 * 6);
}

BlockProblem shaped(int64_t rows, int64_t n) {
  BlockProblem p{};
  p.rows = rows;
  p.columns = n;
  p.n = n;
  return p;
}

// A 4096-row Linear on an H100 (132 SMs, 228 KiB each): one thread per row
// would be 32 CUDA blocks; the chosen shape fills all 132 to their shared
// memory's occupancy (3 blocks of 128 threads each, U taking 64 KiB).
TEST(BlockLaunch, TheChosenShapeFillsTheGpu) {
  const BlockLaunch llama = choose_block_launch(shaped(4096, 128), kH100Limits);
  EXPECT_EQ(llama.threads_per_block, 128);
  EXPECT_EQ(llama.lanes_per_row, 16);
  EXPECT_EQ(describe(shaped(4096, 128), llama), "128 threads, 16 lanes a row (8 rows a block), 512 blocks");
  EXPECT_GE(4096 * llama.lanes_per_row, 132 * 3 * 128);
  EXPECT_LT(4096 * llama.lanes_per_row / 2, 132 * 3 * 128) << "the fewest lanes that fill it";
  // Rows enough to fill it alone: one thread a row.
  EXPECT_EQ(choose_block_launch(shaped(1 << 17, 128), kH100Limits).lanes_per_row, 1);
  // A narrow block: at least 4 columns a lane.
  EXPECT_EQ(choose_block_launch(shaped(4096, 8), kH100Limits).lanes_per_row, 2);
  EXPECT_EQ(choose_block_launch(shaped(4096, 3), kH100Limits).lanes_per_row, 1);
  // Few rows: the most lanes, then smaller CUDA blocks to reach more multiprocessors.
  const BlockLaunch few = choose_block_launch(shaped(100, 128), kH100Limits);
  EXPECT_EQ(few.lanes_per_row, 32);
  EXPECT_EQ(few.threads_per_block, 32);
  // Where shared memory allows more, the resident threads bind: a 16-column
  // block lets an H100 hold 16 blocks of 128 threads a multiprocessor (2048
  // threads), 270336 in all, which 2^18 rows reach with 2 lanes; a GPU of
  // half the threads, with 1 lane; counted by shared memory alone, 4.
  EXPECT_EQ(choose_block_launch(shaped(1 << 18, 16), kH100Limits).lanes_per_row, 2);
  EXPECT_EQ(choose_block_launch(shaped(1 << 18, 16), GpuLimits{132, 228 * 1024, 1024, 32}).lanes_per_row, 1);
  EXPECT_EQ(choose_block_launch(shaped(1 << 18, 16), GpuLimits{132, 228 * 1024, 2048, 4}).lanes_per_row, 1);
  // Every choice is a shape the kernel takes.
  for (const int64_t rows : {1, 7, 100, 300, 4096, 11008, 1 << 20})
    for (const int64_t n : {1, 5, 64, 128})
      for (const GpuLimits gpu : {kH100Limits, GpuLimits{1, 48 * 1024}, GpuLimits{108, 164 * 1024}})
        EXPECT_NO_THROW(check_block_launch(choose_block_launch(shaped(rows, n), gpu))) << rows << " x " << n;
}

TEST(BlockLaunch, ShapesTheKernelCannotTakeAreRefused) {
  for (const BlockLaunch bad : {BlockLaunch{128, 3}, BlockLaunch{128, 64}, BlockLaunch{128, 0}, BlockLaunch{48, 1},
                                BlockLaunch{512, 1}, BlockLaunch{0, 1}})
    EXPECT_THROW(check_block_launch(bad), Error) << bad.threads_per_block << " threads, " << bad.lanes_per_row;
}

}  // namespace
