// pbllm-bench MODEL: tokens per second of a full forward (embed, every layer,
// head) on random token ids; scripts/bench_forward.sh compares it with transformers.
#include <ATen/ops/randint.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "pbllm/io/checkpoint.h"
#include "pbllm/model/decoder.h"
#include "pbllm/model/device.h"
#include "tool_main.h"

int main(int argc, char** argv) {
  CLI::App app{"Time a full forward pass of a checkpoint", "pbllm-bench"};
  std::string model_arg, device_name = "cpu";
  int64_t seqlen = 2048;
  int repeat = 3;
  pbllm::tools::CommonFlags common;
  app.add_option("model", model_arg, "checkpoint directory or ORG/NAME")->required();
  app.add_option("--seqlen", seqlen, "tokens per forward")->check(CLI::PositiveNumber);
  app.add_option("--repeat", repeat, "timed forwards after one warm-up; the best is reported")
      ->check(CLI::PositiveNumber);
  app.add_option("--device", device_name, "cpu, cuda or cuda:N");
  common.add_to(app);
  return pbllm::tools::run_tool(app, argc, argv, [&] {
    common.apply();
    const auto checkpoint = pbllm::io::Checkpoint::open(model_arg);
    const auto model = pbllm::model::DecoderModel::load(checkpoint, pbllm::model::parse_device(device_name));
    c10::NoGradGuard no_grad;
    const at::Tensor ids = at::randint(model->config().vocab_size, {1, seqlen}, at::kLong);
    double best = 1e30;
    for (int run = 0; run <= repeat; ++run) {
      const auto start = std::chrono::steady_clock::now();
      const at::Tensor logits = model->forward(ids);
      (void)logits.sum().item<float>();  // waits for the device
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (run > 0) best = std::min(best, seconds);
    }
    std::printf("pbllm forward: %lld tokens in %.3f s = %.1f tokens/s (best of %d, %d threads)\n", (long long)seqlen,
                best, seqlen / best, repeat, at::get_num_threads());
  });
}
