// LibTorch's intra-op thread count: all cores unless --threads says otherwise.
#pragma once

namespace pbllm {

// threads <= 0: one per hardware thread. Returns the number set.
int set_compute_threads(int threads);

}  // namespace pbllm
