#include "pbllm/core/allocator.h"

#include <malloc.h>

namespace pbllm {

bool keep_freed_buffers() {
  // glibc's default threshold is dynamic: each freed mmapped block raises it
  // to that block's size, so a workload whose buffer sizes vary (a layer's
  // activations, then its stacked weights) keeps getting some of them as
  // fresh mmaps, every page faulted in again. Measured on SmolLM2-135M,
  // 2048-token forwards: 1.59 M page faults and 2.62 s per forward with the
  // default, 0.74 M and 2.43 s with a fixed threshold, the same peak RSS.
  // 32 MiB is the ceiling of glibc's own dynamic threshold on 64-bit;
  // disabling mmap altogether was faster still but fragmented the heap (peak
  // RSS +24% on the one-layer 7B-shaped forward).
  constexpr int kMmapThreshold = 32 << 20;
  constexpr int kTrimThreshold = 256 << 20;
  const bool threshold_set = mallopt(M_MMAP_THRESHOLD, kMmapThreshold) == 1;
  const bool trim_set = mallopt(M_TRIM_THRESHOLD, kTrimThreshold) == 1;
  return threshold_set && trim_set;
}

}  // namespace pbllm
