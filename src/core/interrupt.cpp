#include "pbllm/core/interrupt.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

namespace pbllm {
namespace {

std::atomic<int> received_signal{0};
thread_local int deferring = 0;

// Async-signal-safe: an atomic store, write(2), and for a second signal the
// default action re-raised.
void on_signal(int signal) {
  if (received_signal.exchange(signal) != 0) {
    ::signal(signal, SIG_DFL);
    ::raise(signal);
    return;
  }
  static const char message[] =
      "\nstopping at the next safe point (send the signal again to stop at once)\n";
  [[maybe_unused]] const ssize_t written = ::write(STDERR_FILENO, message, sizeof message - 1);
}

}  // namespace

Interrupted::Interrupted(int signal, const std::string& note)
    : Error(str_cat("interrupted by ", signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : strsignal(signal),
                    note)),
      signal_(signal) {}

void install_interrupt_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // a read or write in flight finishes; the run stops at its next check
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  // Past a file-size limit (ulimit -f) a write fails with EFBIG and the
  // writer's clear error and cleanup run, instead of a silent SIGXFSZ death.
  ::signal(SIGXFSZ, SIG_IGN);
}

int interrupt_signal() { return received_signal.load(); }

void check_interrupted() {
  if (deferring > 0) return;
  if (const int signal = interrupt_signal(); signal != 0) throw Interrupted(signal);
}

DeferInterrupts::DeferInterrupts() { ++deferring; }
DeferInterrupts::~DeferInterrupts() { --deferring; }

}  // namespace pbllm

namespace pbllm {

void signal_self_for_test(const char* point, int64_t index) {
  const char* spec = std::getenv("PBLLM_TEST_SIGNAL");
  if (spec == nullptr) return;
  const std::string text = spec;  // "<point>:<index>:<KILL|TERM|INT>"
  const std::string prefix = str_cat(point, ":", index, ":");
  if (text.rfind(prefix, 0) != 0) return;
  const std::string name = text.substr(prefix.size());
  const int signal = name == "KILL" ? SIGKILL : name == "TERM" ? SIGTERM : name == "INT" ? SIGINT : 0;
  PBLLM_CHECK(signal != 0, "PBLLM_TEST_SIGNAL=", text, ": the signal must be KILL, TERM or INT");
  ::raise(signal);
}

}  // namespace pbllm
