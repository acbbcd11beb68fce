// Moving host tensors to the compute device and parsing --device.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace pbllm::model {

// "cpu", "cuda", "cuda:N". CUDA without a usable GPU is a clear error.
at::Device parse_device(const std::string& name);

// The dtype the forward computes in by default: float32 on the CPU, fp16 on CUDA.
at::ScalarType compute_dtype_for(const at::Device& device);
// --compute-dtype: "auto" (the default above), "float32" (anywhere), "bfloat16"
// (anywhere: on a CPU with AVX512-BF16 or AMX its products run several times
// float32's rate; elsewhere they are emulated, which is said in a warning),
// "float16" (CUDA only: the CPU's fp16 kernels are slow and partial).
at::ScalarType parse_compute_dtype(const std::string& name, const at::Device& device);
// Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX-BF16).
bool cpu_has_bfloat16_units();
// The name parse_compute_dtype takes for a compute dtype: "float32", "bfloat16", "float16".
std::string compute_dtype_name(at::ScalarType dtype);

// Memory a model's compute copies may count on: the machine's RAM for the CPU,
// the free memory of the GPU for CUDA.
int64_t device_memory_bytes(const at::Device& device);

// The most memory the process has held on `device` so far: the peak resident
// set for the CPU, the peak of Torch's CUDA allocator (what it reserved) for a GPU.
int64_t peak_memory_bytes(const at::Device& device);

// The process's resident set now (host).
int64_t resident_memory_bytes();
// What a run may still take: the host's MemAvailable (/proc/meminfo), or a GPU's free memory.
int64_t available_memory_bytes(const at::Device& device);

// Waits for the work queued on `device` (nothing to wait for on the CPU).
void synchronize(const at::Device& device);

// `host` on `device` in `dtype`. A host tensor bound for a narrower dtype on a
// GPU (float32 -> fp16) is copied as it is and converted there by Torch.
at::Tensor to_compute(const at::Tensor& host, const at::Device& device, at::ScalarType dtype);

}  // namespace pbllm::model
