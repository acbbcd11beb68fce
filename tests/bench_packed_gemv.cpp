// pbllm_bench_gemv: y = W x for one token (generation) on LLaMA-7B-shaped
// Linears: the packed GEMV (pack/packed_gemv.h, AVX2 and portable) against
// LibTorch's float32 at::mv on the decoded matrix, and the resident bytes of
// each (scripts/bench_gemv.sh drives it). The Linear is random: xnor, the
// largest 10% of |w| salient at 8 bits (tests/random_layer.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <cstdio>

#include "bench_timing.h"
#include "pbllm/pack/packed_gemv.h"
#include "random_layer.h"
#include "tool_main.h"

int main(int argc, char** argv) {
  CLI::App app{"Packed GEMV vs float32 at::mv", "pbllm_bench_gemv"};
  std::vector<std::string> shapes = {"4096x4096", "11008x4096", "4096x11008"};
  int repeat = 20;
  pbllm::tools::CommonFlags common;
  app.add_option("--shapes", shapes, "ROWSxCOLUMNS of each Linear (rows = out_features)")->delimiter(',');
  app.add_option("--repeat", repeat, "timed runs after one warm-up; the best is reported")->check(pbllm::tools::count_range());
  common.add_to(app);
  pbllm::tools::run_tool(app, argc, argv, [&] {
    common.apply();
    c10::NoGradGuard no_grad;
    for (const std::string& shape : shapes) {
      const auto [rows, columns] = pbllm::tools::parse_shape(shape);
      const auto packed = pbllm::pack::encode_linear(pbllm::testing::random_quantized_linear(rows, columns, 0.9, 1),
                                                     shape);
      const pbllm::pack::PackedGemv gemv(packed);
      const at::Tensor W = pbllm::pack::decode_linear(packed);
      const at::Tensor x = at::randn({columns});
      const double dense = pbllm::tools::best_seconds(repeat, [&] { (void)at::mv(W, x); });
      const double portable =
          pbllm::tools::best_seconds(repeat, [&] { (void)gemv(x, pbllm::pack::GemvKernel::portable); });
      const double avx2 = pbllm::pack::PackedGemv::avx2_available()
                              ? pbllm::tools::best_seconds(repeat, [&] { (void)gemv(x, pbllm::pack::GemvKernel::avx2); })
                              : 0.0;
      std::printf("%-11s %d threads: float32 at::mv %7.3f ms (%5.1f GB/s)   packed avx2 %7.3f ms = %5.2fx   "
                  "portable %7.3f ms = %5.2fx   resident %6.1f MB -> %5.1f MB (%4.1fx smaller, %.2f bits/weight)\n",
                  shape.c_str(), at::get_num_threads(), 1e3 * dense, W.nbytes() / dense / 1e9, 1e3 * avx2,
                  avx2 > 0 ? dense / avx2 : 0.0, 1e3 * portable, dense / portable, W.nbytes() / 1e6,
                  gemv.resident_bytes() / 1e6, static_cast<double>(W.nbytes()) / gemv.resident_bytes(),
                  8.0 * gemv.resident_bytes() / W.numel());
    }
  });
}
