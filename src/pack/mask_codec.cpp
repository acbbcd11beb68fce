#include "pbllm/pack/mask_codec.h"

#include <ATen/ops/zeros.h>

#include <cmath>

#include "pbllm/core/check.h"
#include "pbllm/pack/bit_stream.h"

namespace pbllm::pack {
namespace {

// Each block's gaps, for choosing k and for writing.
std::vector<std::vector<int64_t>> block_gaps(const at::Tensor& salient) {
  const int64_t rows = salient.size(0), columns = salient.size(1);
  const bool* data = salient.data_ptr<bool>();
  std::vector<std::vector<int64_t>> gaps((rows + kMaskRowsPerBlock - 1) / kMaskRowsPerBlock);
  for (size_t block = 0; block < gaps.size(); ++block) {
    const int64_t first = static_cast<int64_t>(block) * kMaskRowsPerBlock * columns;
    const int64_t end = std::min(rows * columns, first + kMaskRowsPerBlock * columns);
    int64_t previous = -1;
    for (int64_t entry = first; entry < end; ++entry) {
      if (!data[entry]) continue;
      gaps[block].push_back(entry - first - previous - 1);
      previous = entry - first;
    }
  }
  return gaps;
}

// The k that minimises the coded size: sum over gaps of (gap >> k) + 1 + k.
int best_rice_k(const std::vector<std::vector<int64_t>>& gaps) {
  int best = 0;
  double best_bits = INFINITY;
  for (int k = 0; k <= 24; ++k) {
    double bits = 0;
    for (const auto& block : gaps)
      for (const int64_t gap : block) bits += static_cast<double>(gap >> k) + 1 + k;
    if (bits < best_bits) best_bits = bits, best = k;
  }
  return best;
}

}  // namespace

EncodedMask encode_mask(const at::Tensor& salient) {
  PBLLM_CHECK(salient.dim() == 2 && salient.scalar_type() == at::kBool && salient.device().is_cpu(),
              "encode_mask: expected a CPU bool [rows, columns] tensor");
  const at::Tensor mask = salient.contiguous();
  const auto gaps = block_gaps(mask);
  EncodedMask encoded;
  encoded.rice_k = best_rice_k(gaps);
  BitWriter writer;
  for (const auto& block : gaps) {
    encoded.index.push_back(static_cast<int64_t>(writer.bit_count()));
    encoded.index.push_back(encoded.salient);
    for (const int64_t gap : block) {
      writer.put_unary(static_cast<uint64_t>(gap) >> encoded.rice_k);
      writer.put(static_cast<uint64_t>(gap), encoded.rice_k);  // put keeps the k low bits
    }
    encoded.salient += static_cast<int64_t>(block.size());
  }
  encoded.index.push_back(static_cast<int64_t>(writer.bit_count()));
  encoded.index.push_back(encoded.salient);
  encoded.stream = writer.bytes();
  return encoded;
}

void MaskView::block_positions(int64_t block, std::vector<int64_t>& positions) const {
  positions.clear();
  const int64_t count = index[2 * (block + 1) + 1] - index[2 * block + 1];
  const int64_t entries = std::min(kMaskRowsPerBlock, rows - block * kMaskRowsPerBlock) * columns;
  BitReader reader(stream, stream_bytes, static_cast<uint64_t>(index[2 * block]), what);
  int64_t previous = -1;
  for (int64_t i = 0; i < count; ++i) {
    const uint64_t quotient = reader.get_unary();
    const int64_t gap = static_cast<int64_t>((quotient << rice_k) | reader.get(rice_k));
    previous += gap + 1;
    PBLLM_CHECK(gap >= 0 && previous < entries, *what, ": a salient position past the end of row block ", block,
                " (corrupt mask)");
    positions.push_back(previous);
  }
  // Blocks are written back to back: decoding one ends exactly where the next begins.
  PBLLM_CHECK(reader.position() == static_cast<uint64_t>(index[2 * (block + 1)]), *what, ": mask block ", block,
              " ends at bit ", reader.position(), ", the index says ", index[2 * (block + 1)], " (corrupt mask)");
}

void check_mask_index(const MaskView& view, int64_t salient) {
  const std::string& what = *view.what;
  PBLLM_CHECK(view.rice_k >= 0 && view.rice_k <= 24, what, ": Rice parameter ", view.rice_k, " is outside 0..24");
  const int64_t blocks = view.blocks();
  PBLLM_CHECK(view.index[0] == 0 && view.index[1] == 0, what, ": the mask index does not start at 0");
  for (int64_t block = 0; block < blocks; ++block) {
    const int64_t* here = view.index + 2 * block;
    const int64_t entries = std::min(kMaskRowsPerBlock, view.rows - block * kMaskRowsPerBlock) * view.columns;
    const int64_t count = here[3] - here[1];
    PBLLM_CHECK(here[2] >= here[0] && count >= 0 && count <= entries, what, ": mask index entry ", block + 1,
                " is not monotone or counts more salient weights than its block has");
    // Each coded position takes at least 1 + k bits.
    PBLLM_CHECK(here[2] - here[0] >= count * (1 + view.rice_k), what, ": mask block ", block,
                " is shorter than its ", count, " positions need");
  }
  PBLLM_CHECK(static_cast<uint64_t>(view.index[2 * blocks]) <= view.stream_bytes * 8, what,
              ": the mask index points past the end of the mask stream (truncated?)");
  PBLLM_CHECK((static_cast<uint64_t>(view.index[2 * blocks]) + 7) / 8 == view.stream_bytes, what,
              ": the mask stream has ", view.stream_bytes, " bytes, its index ends at bit ", view.index[2 * blocks]);
  PBLLM_CHECK(view.index[2 * blocks + 1] == salient, what, ": the mask holds ", view.index[2 * blocks + 1],
              " salient weights, the metadata says ", salient);
}

double mask_entropy_bits_per_weight(int64_t n, int64_t k) {
  if (n <= 0 || k <= 0 || k >= n) return 0;
  const double log2_choose = (std::lgamma(n + 1.0) - std::lgamma(k + 1.0) - std::lgamma(n - k + 1.0)) / std::log(2.0);
  return log2_choose / static_cast<double>(n);
}

at::Tensor decode_mask(const MaskView& view) {
  at::Tensor mask = at::zeros({view.rows, view.columns}, at::kBool);
  bool* out = mask.data_ptr<bool>();
  std::vector<int64_t> positions;
  for (int64_t block = 0; block < view.blocks(); ++block) {
    view.block_positions(block, positions);
    bool* block_start = out + block * kMaskRowsPerBlock * view.columns;
    for (const int64_t position : positions) block_start[position] = true;
  }
  return mask;
}

}  // namespace pbllm::pack
