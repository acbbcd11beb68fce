// The C allocator's settings for a tool's process: large buffers (activations,
// logits, weight copies) are freed and allocated again at every layer and
// window, and should come back from the heap, not as fresh pages from the kernel.
#pragma once

namespace pbllm {

// Fixes glibc malloc's mmap threshold at 32 MiB and keeps up to
// 256 MiB of freed memory before returning it to the kernel. Returns false
// where the C library refused a setting (then nothing worse than its default).
bool keep_freed_buffers();

}  // namespace pbllm
