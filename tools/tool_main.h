// What every pbllm tool's main shares: library errors become one line on
// stderr and exit code 1; SIGINT / SIGTERM stop at the next safe point with
// exit status 130 / 143; CLI11 parse errors its usual message and code;
// freed large buffers are reused (core/allocator.h).
// The process ends with _Exit once its output is flushed: the static
// destructors of LibTorch and the CUDA libraries would page in ~100 MiB of
// their code on the way out (measured), raising the peak resident set of a
// small run by a quarter for nothing. Everything the tools write is closed
// (and renamed into place) before the body returns.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <string>

#include "pbllm/core/allocator.h"
#include "pbllm/core/interrupt.h"
#include "pbllm/core/threads.h"
#include "pbllm/io/checkpoint.h"
#include "pbllm/model/decoder.h"
#include "pbllm/model/device.h"
#include "pbllm/report/logging.h"

namespace pbllm::tools {

// The check of a count flag (--nsamples, --repeat, ...): CLI11's PositiveNumber
// would print its bound as a 300-digit double.
inline CLI::Range count_range() { return CLI::Range(int64_t{1}, int64_t{1} << 40); }

// Flags every tool has: --threads, --log-level.
struct CommonFlags {
  int threads = 0;
  std::string log_level = "info";
  void add_to(CLI::App& app) {
    app.add_option("--threads", threads, "CPU threads for LibTorch (default: all cores)")->check(CLI::Range(0, 1 << 20));
    app.add_option("--log-level", log_level, "debug, info, warn, error or off")
        ->check(CLI::IsMember({"debug", "info", "warn", "error", "off"}));
  }
  void apply() const {
    log::setup(log::level_from_name(log_level));
    set_compute_threads(threads);
  }
};

// --device and --compute-dtype, and the model they load.
struct DeviceFlags {
  std::string device = "cpu", compute_dtype = "auto";
  void add_to(CLI::App& app) {
    app.add_option("--device", device, "cpu, cuda or cuda:N");
    app.add_option("--compute-dtype,--compute_dtype", compute_dtype,
                   "auto (float32 on the CPU, float16 on CUDA), float32, bfloat16 (fast on CPUs with AVX512-BF16 or AMX) or "
                   "float16 (CUDA)");
  }
  std::unique_ptr<model::DecoderModel> load(const io::Checkpoint& checkpoint) const {
    const at::Device where = model::parse_device(device);
    return model::DecoderModel::load(checkpoint, where, model::parse_compute_dtype(compute_dtype, where));
  }
};

// Flushes what was printed and ends the process with `status`.
[[noreturn]] inline void end_process(int status) {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  std::_Exit(status);
}

// Parses argv into `app`, then runs `body`; the exit code of the whole tool.
inline int exit_status_of(CLI::App& app, int argc, char** argv, const std::function<void()>& body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    if (error.get_exit_code() == 0) return app.exit(error);  // --help
    // One line with the tool's name, as every other error.
    std::cerr << app.get_name() << ": error: " << error.what() << " (see --help)\n";
    return error.get_exit_code();
  }
  install_interrupt_handlers();
  keep_freed_buffers();
  try {
    body();
    // A signal that came after the last safe point: the work is complete, but say so.
    check_interrupted();
    return 0;
  } catch (const Interrupted& interrupted) {
    std::cerr << app.get_name() << ": " << interrupted.what() << "; nothing half-written was left behind\n";
    return interrupted.exit_status();
  } catch (const std::exception& error) {
    std::cerr << app.get_name() << ": error: " << error.what() << "\n";
    return 1;
  }
}

// Runs the tool and ends the process with its exit code.
[[noreturn]] inline void run_tool(CLI::App& app, int argc, char** argv, const std::function<void()>& body) {
  end_process(exit_status_of(app, argc, argv, body));
}

}  // namespace pbllm::tools
