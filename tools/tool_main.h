// What every pbllm tool's main shares: library errors become one line on
// stderr and exit code 1; SIGINT / SIGTERM stop at the next safe point with
// exit status 130 / 143; CLI11 parse errors its usual message and code.
#pragma once

#include <CLI/CLI.hpp>

#include <exception>
#include <functional>
#include <iostream>

#include "pbllm/core/interrupt.h"
#include "pbllm/core/threads.h"
#include "pbllm/report/logging.h"

namespace pbllm::tools {

// Flags every tool has: --threads, --log-level.
struct CommonFlags {
  int threads = 0;
  std::string log_level = "info";
  void add_to(CLI::App& app) {
    app.add_option("--threads", threads, "CPU threads for LibTorch (default: all cores)")->check(CLI::NonNegativeNumber);
    app.add_option("--log-level", log_level, "debug, info, warn, error or off")
        ->check(CLI::IsMember({"debug", "info", "warn", "error", "off"}));
  }
  void apply() const {
    log::setup(log::level_from_name(log_level));
    set_compute_threads(threads);
  }
};

// Parses argv into `app`, then runs `body`; returns the process exit code.
inline int run_tool(CLI::App& app, int argc, char** argv, const std::function<void()>& body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }
  install_interrupt_handlers();
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

}  // namespace pbllm::tools
