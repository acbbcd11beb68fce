// The salient mask as Golomb-Rice coded gaps (docs/DESIGN.md, "The packed PB
// format"). The positions of the salient weights, row-major, are cut into
// blocks of kMaskRowsPerBlock rows; inside a block each position is coded as
// the gap to the previous one (gap = position - previous - 1, the first from
// the block's start): quotient gap >> k in unary, then the k low bits. With a
// salient fraction p the gaps are close to geometric, for which Rice with the
// best k costs within ~1.5% of the entropy H(p) per weight (0.476 against
// 0.469 bits at p = 0.1), against 1 bit per weight for a bitmap.
// An index gives each block's first bit and the salient weights before it,
// so blocks decode independently (in parallel, or only the rows one needs).
#pragma once

#include <ATen/core/Tensor.h>

#include <stdint.h>

#include <string>
#include <vector>

namespace pbllm::pack {

inline constexpr int64_t kMaskRowsPerBlock = 64;

struct EncodedMask {
  std::vector<uint8_t> stream;
  std::vector<int64_t> index;  // [blocks + 1][2]: first bit, salient weights before the block
  int rice_k = 0;
  int64_t salient = 0;
};

// salient: bool [rows, columns] on the CPU.
EncodedMask encode_mask(const at::Tensor& salient);

// A decoder of one packed mask; `what` names it in errors.
struct MaskView {
  const uint8_t* stream;
  uint64_t stream_bytes;
  const int64_t* index;  // as EncodedMask::index
  int64_t rows, columns;
  int rice_k;
  const std::string* what;

  int64_t blocks() const { return (rows + kMaskRowsPerBlock - 1) / kMaskRowsPerBlock; }
  // Positions (row-major, from the block's first entry) of block `block`'s salient weights.
  void block_positions(int64_t block, std::vector<int64_t>& positions) const;
};

// The whole mask: bool [rows, columns] on the CPU.
at::Tensor decode_mask(const MaskView& view);

// The structure of an index: monotone, inside the stream and the block sizes,
// ending at `salient`; throws naming `what`.
void check_mask_index(const MaskView& view, int64_t salient);

// log2(C(n, k)) / n: the bits per weight any coding of k positions among n needs
// when nothing else is known about them (the entropy bound quoted in the README).
double mask_entropy_bits_per_weight(int64_t n, int64_t k);

}  // namespace pbllm::pack
