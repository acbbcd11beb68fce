// SHA-256 compression with the SHA extensions. Tricks, and why:
// - sha256rnds2 does two rounds on a state split as (a, b, e, f) and
//   (c, d, g, h), so the state is reshuffled into that layout once per call,
//   not per block, and back at the end.
// - Each group of four rounds adds four message words plus their round
//   constants in one vector; rnds2 takes the low two, then the high two
//   after a shuffle (0x0E moves lanes 2, 3 down).
// - The message schedule W[16..63] is built four words at a time from the
//   last sixteen, in a ring of four vectors: sha256msg1 (the sigma0 part)
//   three groups ahead of use, then the W[t-7] term (alignr of the two
//   latest vectors) and sha256msg2 (the sigma1 part) one group ahead.
// - Message words are big-endian: one pshufb per 16 bytes.
#include "sha256_x86.h"

#if defined(__x86_64__) && defined(__SHA__) && defined(__SSE4_1__)
#include <cpuid.h>
#include <immintrin.h>
#define PBLLM_SHA256_X86 1
#endif

namespace pbllm::kernels {

const uint32_t kSha256Round[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

#ifdef PBLLM_SHA256_X86


bool sha256_x86_available() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool ssse3 = c & (1u << 9), sse41 = c & (1u << 19);
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool sha = b & (1u << 29);
  return ssse3 && sse41 && sha;
}

void sha256_blocks_x86(uint32_t state[8], const uint8_t* data, size_t blocks) {
  const __m128i big_endian = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  // (a, b, c, d), (e, f, g, h) -> (a, b, e, f) and (c, d, g, h), as rnds2 wants them (high lanes first).
  __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(state)), 0xB1);
  __m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(state + 4)), 0x1B);
  __m128i abef = _mm_alignr_epi8(abcd, efgh, 8);
  __m128i cdgh = _mm_blend_epi16(efgh, abcd, 0xF0);
  for (; blocks > 0; --blocks, data += 64) {
    const __m128i abef_before = abef, cdgh_before = cdgh;
    __m128i message[4];
    for (int g = 0; g < 4; ++g)
      message[g] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(data + 16 * g)), big_endian);
    for (int g = 0; g < 16; ++g) {  // rounds 4g .. 4g + 3
      const __m128i current = message[g & 3];
      __m128i words = _mm_add_epi32(current, _mm_loadu_si128(reinterpret_cast<const __m128i*>(kSha256Round + 4 * g)));
      cdgh = _mm_sha256rnds2_epu32(cdgh, abef, words);
      if (g >= 3 && g < 15) {  // W[4(g+1) ..]: its msg1 part is in message[(g + 1) & 3]
        __m128i& next = message[(g + 1) & 3];
        next = _mm_add_epi32(next, _mm_alignr_epi8(current, message[(g - 1) & 3], 4));
        next = _mm_sha256msg2_epu32(next, current);
      }
      words = _mm_shuffle_epi32(words, 0x0E);
      abef = _mm_sha256rnds2_epu32(abef, cdgh, words);
      if (g >= 1 && g < 13) message[(g - 1) & 3] = _mm_sha256msg1_epu32(message[(g - 1) & 3], current);
    }
    abef = _mm_add_epi32(abef, abef_before);
    cdgh = _mm_add_epi32(cdgh, cdgh_before);
  }
  const __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
  const __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state), _mm_blend_epi16(feba, dchg, 0xF0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state + 4), _mm_alignr_epi8(dchg, feba, 8));
}

#else

bool sha256_x86_available() { return false; }
void sha256_blocks_x86(uint32_t*, const uint8_t*, size_t) {}

#endif

}  // namespace pbllm::kernels
