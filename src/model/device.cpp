#include "pbllm/model/device.h"

#include <ATen/Context.h>
#include <ATen/DeviceAccelerator.h>
#include <ATen/ops/empty.h>

#include <sys/resource.h>

#include <fstream>
#include <string>
#include <unistd.h>

#include "pbllm/core/check.h"
#include "pbllm/report/logging.h"

#ifdef PBLLM_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace pbllm::model {

at::Device parse_device(const std::string& name) {
  at::Device device(at::kCPU);
  try {
    device = at::Device(name);
  } catch (const std::exception&) {
    throw Error(str_cat("--device '", name, "' is not a device (cpu, cuda, cuda:N)"));
  }
  PBLLM_CHECK(device.is_cpu() || device.is_cuda(), "--device '", name, "' is not supported (cpu, cuda, cuda:N)");
  if (device.is_cuda()) {
    PBLLM_CHECK(at::hasCUDA(), "--device ", name, ": no CUDA GPU is available on this machine");
    PBLLM_CHECK(!device.has_index() || device.index() < static_cast<int>(at::getNumGPUs()), "--device ", name,
                ": this machine has ", at::getNumGPUs(), " GPU(s)");
  }
  return device;
}

at::ScalarType compute_dtype_for(const at::Device& device) { return device.is_cuda() ? at::kHalf : at::kFloat; }

std::string compute_dtype_name(at::ScalarType dtype) {
  if (dtype == at::kHalf) return "float16";
  return dtype == at::kBFloat16 ? "bfloat16" : "float32";
}

bool cpu_has_bfloat16_units() {
  // The kernel's flags, not cpuid: AMX also needs the kernel's consent to the
  // tile state, which a flag in /proc/cpuinfo implies.
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("flags", 0) == 0)
      return line.find(" avx512_bf16") != std::string::npos || line.find(" amx_bf16") != std::string::npos;
  return false;
}

at::ScalarType parse_compute_dtype(const std::string& name, const at::Device& device) {
  if (name == "auto") return compute_dtype_for(device);
  if (name == "float32") return at::kFloat;
  if (name == "bfloat16") {
    if (device.is_cpu() && !cpu_has_bfloat16_units())
      log::warn("--compute-dtype bfloat16: this CPU has neither AVX512-BF16 nor AMX, so its bfloat16 products are "
                "emulated and slower than float32");
    return at::kBFloat16;
  }
  PBLLM_CHECK(name == "float16", "--compute-dtype '", name, "' is not one of auto, float32, bfloat16, float16");
  PBLLM_CHECK(device.is_cuda(), "--compute-dtype float16 needs --device cuda (the CPU computes in float32 or bfloat16)");
  return at::kHalf;
}

int64_t device_memory_bytes(const at::Device& device) {
#ifdef PBLLM_WITH_CUDA
  if (device.is_cuda()) {
    const c10::cuda::CUDAGuard guard(device);
    size_t free_bytes = 0, total_bytes = 0;
    const cudaError_t status = cudaMemGetInfo(&free_bytes, &total_bytes);
    PBLLM_CHECK(status == cudaSuccess, "cannot query the memory of ", device.str(), ": ", cudaGetErrorString(status));
    return static_cast<int64_t>(free_bytes);
  }
#endif
  return static_cast<int64_t>(::sysconf(_SC_PHYS_PAGES)) * ::sysconf(_SC_PAGE_SIZE);
}

int64_t peak_memory_bytes(const at::Device& device) {
#ifdef PBLLM_WITH_CUDA
  if (device.is_cuda()) {
    const auto index = device.has_index() ? device.index() : c10::cuda::current_device();
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    return stats.reserved_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
  }
#endif
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

int64_t resident_memory_bytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * ::sysconf(_SC_PAGE_SIZE);
}

int64_t available_memory_bytes(const at::Device& device) {
  if (device.is_cuda()) return device_memory_bytes(device);  // cudaMemGetInfo's free bytes
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return device_memory_bytes(device);  // an old kernel without the field: physical memory
}

void synchronize(const at::Device& device) {
  // "cuda" without an index is the current device.
  if (!device.is_cpu()) at::accelerator::synchronizeDevice(device.has_index() ? device.index() : at::accelerator::getDeviceIndex());
}

at::Tensor to_compute(const at::Tensor& host, const at::Device& device, at::ScalarType dtype) {
  // A wider host tensor goes to the GPU as it is and is narrowed there by
  // Torch's own kernel (round to nearest even), not on the host's cores.
  if (device.is_cuda() && host.is_cpu() && static_cast<size_t>(host.element_size()) > c10::elementSize(dtype))
    return host.to(device).to(dtype);
  return host.to(device, dtype);
}

}  // namespace pbllm::model
