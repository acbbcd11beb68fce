// Host-facing entry of kernels/fp16_convert.cu: float32 -> IEEE fp16, the
// conversion used when a float32 checkpoint is loaded onto a GPU in fp16.
// Raw pointers and a stream only, so this header pulls in nothing heavy.
#pragma once

#include <cstdint>

namespace pbllm::kernels {

// Converts `count` floats at device pointer `source` to fp16 (round to nearest
// even, as __float2half_rn) at device pointer `destination`, on `stream` (a
// cudaStream_t). Checks its arguments and the launch; throws pbllm::Error.
void convert_f32_to_f16(const float* source, uint16_t* destination, int64_t count, void* stream);

}  // namespace pbllm::kernels
