// pbllm-bench: the timings the scripts/bench_*.sh drivers compare with
// transformers.
//   pbllm-bench forward MODEL    tokens/s of a full forward on random ids
//   pbllm-bench tokenize DIR FILE  MB/s of encoding a text file
//   pbllm-bench decode PACKED    GB/s of decoding a packed checkpoint's Linears to float32
#include <ATen/Parallel.h>
#include <ATen/ops/randint.h>
#include <c10/core/GradMode.h>

#include <cstdio>
#include <fstream>
#include <iterator>

#include "pbllm/io/checkpoint.h"
#include "pbllm/model/decoder.h"
#include "pbllm/model/device.h"
#include "pbllm/pack/packed_checkpoint.h"
#include "pbllm/tokenizer/tokenizer.h"
#include "bench_timing.h"
#include "tool_main.h"

int main(int argc, char** argv) {
  CLI::App app{"Timings for the benchmark scripts", "pbllm-bench"};
  app.require_subcommand(1);
  app.fallthrough();  // --threads and the other common flags may follow the subcommand
  int repeat = 3;
  pbllm::tools::CommonFlags common;
  app.add_option("--repeat", repeat, "timed runs after one warm-up; the best is reported")->check(pbllm::tools::count_range());
  common.add_to(app);

  std::string model_arg;
  pbllm::tools::DeviceFlags device;
  int64_t seqlen = 2048;
  CLI::App* forward = app.add_subcommand("forward", "tokens/s of a full forward (embed, layers, head)");
  forward->add_option("model", model_arg, "checkpoint directory or ORG/NAME")->required();
  forward->add_option("--seqlen", seqlen, "tokens per forward")->check(pbllm::tools::count_range());
  device.add_to(*forward);

  std::string tokenizer_dir, text_path;
  CLI::App* tokenize = app.add_subcommand("tokenize", "MB/s of encoding a text file (one thread)");
  tokenize->add_option("tokenizer", tokenizer_dir, "folder with the tokenizer files")->required();
  tokenize->add_option("file", text_path, "text file")->required()->check(CLI::ExistingFile);

  std::string packed_arg;
  CLI::App* decode = app.add_subcommand("decode", "GB/s of float32 output decoding every packed Linear");
  decode->add_option("model", packed_arg, "a packed PB checkpoint (pbllm-quantize --save DIR --format pb)")->required();

  pbllm::tools::run_tool(app, argc, argv, [&] {
    common.apply();
    if (*decode) {
      const auto checkpoint = pbllm::io::Checkpoint::open(packed_arg);
      const auto packed = pbllm::pack::read_packed_linears(checkpoint);
      PBLLM_CHECK(!packed.empty(), packed_arg, " has no packed Linears");
      int64_t weights = 0, stored = 0;
      for (const auto& [name, linear] : packed) weights += linear->weights(), stored += linear->stored_bytes();
      const double seconds = pbllm::tools::best_seconds(repeat, [&] {
        for (const auto& [name, linear] : packed) (void)pbllm::pack::decode_linear(*linear);
      });
      std::printf("pbllm decode: %zu Linears, %.1f MB packed -> %.1f MB float32 in %.3f s = %.2f GB/s of output "
                  "(best of %d, %d threads)\n", packed.size(), stored / 1e6, 4e-6 * weights, seconds,
                  4e-9 * weights / seconds, repeat, at::get_num_threads());
      return;
    }
    if (*forward) {
      const auto checkpoint = pbllm::io::Checkpoint::open(model_arg);
      const auto model = device.load(checkpoint);
      c10::NoGradGuard no_grad;
      const at::Tensor ids = at::randint(model->config().vocab_size, {1, seqlen}, at::kLong);
      const double seconds = pbllm::tools::best_seconds(repeat, [&] { (void)model->forward(ids).sum().item<float>(); });
      std::printf("pbllm forward: %lld tokens in %.3f s = %.1f tokens/s (best of %d, %d threads)\n",
                  (long long)seqlen, seconds, seqlen / seconds, repeat, at::get_num_threads());
      return;
    }
    const auto tokenizer = pbllm::tokenizer::Tokenizer::from_directory(tokenizer_dir);
    std::ifstream in(text_path, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t count = 0;
    const double seconds = pbllm::tools::best_seconds(repeat, [&] { count = tokenizer->encode(text).size(); });
    std::printf("pbllm tokenize: %.2f MB -> %zu ids in %.3f s = %.2f MB/s (%s)\n", text.size() / 1e6, count, seconds,
                text.size() / 1e6 / seconds, tokenizer->description().c_str());
  });
}
