// LibTorch's intra-op thread count: all cores unless --threads says otherwise.
#pragma once

namespace pbllm {

// threads <= 0: one per hardware thread. Returns the number set. Also
// initialise_vector_math(), so every tool gets the same bits run to run.
int set_compute_threads(int threads);

// One serial call of each vector-math function LibTorch hands to MKL, before
// any parallel call can race MKL's first-call setup (see threads.cpp).
void initialise_vector_math();

}  // namespace pbllm
