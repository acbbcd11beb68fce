// SHA-256's block compression with the x86 SHA extensions (SHA-NI), for
// src/io/sha256.cpp: hashing a 13 GB checkpoint for the resume manifest went
// at ~270 MB/s in portable C++. Compiled with -msha -msse4.1 only in
// sha256_x86.cpp; called only where the CPU has them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pbllm::kernels {

// FIPS 180-4's 64 round constants K, for this code and the portable one.
extern const uint32_t kSha256Round[64];

// The CPU has SHA, SSSE3 and SSE4.1 (cpuid), and this build has the code.
bool sha256_x86_available();

// FIPS 180-4's compression of `blocks` 64-byte blocks into `state` (a, b, ..., h).
void sha256_blocks_x86(uint32_t state[8], const uint8_t* data, size_t blocks);

}  // namespace pbllm::kernels
