// SIGINT / SIGTERM for long runs: the first signal asks the run to stop at its
// next safe point (between Linears, layers, windows or saved tensors), where
// check_interrupted() throws Interrupted and the code unwinding it removes
// whatever it had half-written; a second signal ends the process at once.
// The tools turn Interrupted into one line and exit status 128 + signal.
#pragma once

#include <cstdint>

#include "pbllm/core/check.h"

namespace pbllm {

class Interrupted : public Error {
 public:
  // `note` is added to the message (e.g. where the finished work is kept).
  explicit Interrupted(int signal, const std::string& note = "");
  int signal() const { return signal_; }
  int exit_status() const { return 128 + signal_; }

 private:
  int signal_;
};

// Installs the handlers (idempotent) and ignores SIGXFSZ. Only the tools call this: a library
// user keeps its own signal handling.
void install_interrupt_handlers();
// The signal received since the handlers were installed, else 0.
int interrupt_signal();
// Throws Interrupted when a signal has arrived (not while a DeferInterrupts lives).
void check_interrupted();

// While one lives on this thread, check_interrupted() does not throw: for the
// write that keeps the finished work after a signal has arrived (a second
// signal still ends the process at once).
class DeferInterrupts {
 public:
  DeferInterrupts();
  ~DeferInterrupts();
  DeferInterrupts(const DeferInterrupts&) = delete;
  DeferInterrupts& operator=(const DeferInterrupts&) = delete;
};

// Fault injection for the resume tests: with PBLLM_TEST_SIGNAL="<point>:<index>:<KILL|TERM|INT>"
// in the environment, the process sends itself that signal when it reaches
// that point ("layer" after layer <index> is kept), as a kill from outside
// at exactly that moment would. Without the variable it does nothing.
void signal_self_for_test(const char* point, int64_t index);

}  // namespace pbllm
