// pbllm_bench_gemv: y = W x for one token (generation) on LLaMA-7B-shaped
// Linears: the packed GEMV (pack/packed_gemv.h, AVX2 and portable) against
// LibTorch's float32 at::mv on the decoded matrix, and the resident bytes of
// each (scripts/bench_gemv.sh drives it). The Linear is random: xnor, the
// largest 10% of |w| salient at 8 bits (tests/random_layer.h), in --dtype.
//
// Two settings: "hot" repeats one product, so a matrix that fits in the
// last-level cache is read from there; "cold" cycles through copies that
// together exceed twice that cache, as generation does (every Linear of a
// model is read once per token), so the weights come from memory.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <cstdio>
#include <fstream>

#include "bench_timing.h"
#include "pbllm/pack/packed_gemv.h"
#include "random_layer.h"
#include "tool_main.h"

namespace {

// The last-level cache's bytes (Linux sysfs; 32 MiB when it cannot be read).
int64_t last_level_cache_bytes() {
  int64_t bytes = 32 << 20;
  for (int index = 0; index < 8; ++index) {
    std::ifstream in("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/size");
    std::string size;
    if (!(in >> size) || size.empty()) continue;
    const int64_t scale = size.back() == 'K' ? 1024 : size.back() == 'M' ? 1024 * 1024 : 1;
    bytes = std::stoll(size) * scale;  // the highest index is the last level
  }
  return bytes;
}

// Copies of `make()` until they hold more than `bytes` (at least one; at most
// 4096, so a tiny shape does not make millions: its "cold" line then says so
// by its copy count).
template <typename T, typename Make>
std::vector<T> copies_beyond(int64_t bytes, int64_t each, Make&& make) {
  constexpr size_t kMostCopies = 4096;
  std::vector<T> all;
  do all.push_back(make());
  while (static_cast<int64_t>(all.size()) * each <= bytes && all.size() < kMostCopies);
  return all;
}

// Best seconds per product of `product(copy)` over a pass through every copy.
template <typename T, typename Product>
double seconds_per_product(int repeat, const std::vector<T>& all, Product&& product) {
  return pbllm::tools::best_seconds(repeat, [&] {
           for (const T& copy : all) product(copy);
         }) /
         static_cast<double>(all.size());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Packed GEMV vs float32 at::mv", "pbllm_bench_gemv"};
  std::vector<std::string> shapes = {"4096x4096", "11008x4096", "4096x11008"};
  int repeat = 20;
  std::string dtype_name = "float32";
  pbllm::tools::CommonFlags common;
  app.add_option("--shapes", shapes, "ROWSxCOLUMNS of each Linear (rows = out_features)")->delimiter(',');
  app.add_option("--repeat", repeat, "timed runs after one warm-up; the best is reported")->check(pbllm::tools::count_range());
  app.add_option("--dtype", dtype_name, "the checkpoint's dtype the packed values decode through")
      ->check(CLI::IsMember({"float32", "float16", "bfloat16"}));
  common.add_to(app);
  pbllm::tools::run_tool(app, argc, argv, [&] {
    common.apply();
    c10::NoGradGuard no_grad;
    const at::ScalarType dtype =
        dtype_name == "float16" ? at::kHalf : dtype_name == "bfloat16" ? at::kBFloat16 : at::kFloat;
    const int64_t cold_bytes = 2 * last_level_cache_bytes();
    for (const std::string& shape : shapes) {
      const auto [rows, columns] = pbllm::tools::parse_shape(shape);
      const auto packed = pbllm::pack::encode_linear(
          pbllm::testing::random_quantized_linear(rows, columns, 0.9, 1, dtype), shape);
      const pbllm::pack::PackedGemv gemv(packed);
      const at::Tensor W = pbllm::pack::decode_linear(packed);
      const at::Tensor x = at::randn({columns});
      const bool avx2 = pbllm::pack::PackedGemv::avx2_available();
      const auto kernel = avx2 ? pbllm::pack::GemvKernel::avx2 : pbllm::pack::GemvKernel::portable;
      const double dense = pbllm::tools::best_seconds(repeat, [&] { (void)at::mv(W, x); });
      const double portable =
          pbllm::tools::best_seconds(repeat, [&] { (void)gemv(x, pbllm::pack::GemvKernel::portable); });
      const double fast = avx2 ? pbllm::tools::best_seconds(repeat, [&] { (void)gemv(x, kernel); }) : portable;
      std::printf("%-11s %d threads %s, hot:  float32 at::mv %7.3f ms (%5.1f GB/s)   packed %s %7.3f ms = %5.2fx   "
                  "portable %7.3f ms = %5.2fx   resident %6.1f MB -> %5.1f MB (%4.1fx smaller, %.2f bits/weight)\n",
                  shape.c_str(), at::get_num_threads(), dtype_name.c_str(), 1e3 * dense, W.nbytes() / dense / 1e9,
                  avx2 ? "avx2" : "portable", 1e3 * fast, dense / fast, 1e3 * portable, dense / portable,
                  W.nbytes() / 1e6, gemv.resident_bytes() / 1e6, static_cast<double>(W.nbytes()) / gemv.resident_bytes(),
                  8.0 * gemv.resident_bytes() / W.numel());
      const auto dense_copies =
          copies_beyond<at::Tensor>(cold_bytes, W.nbytes(), [&] { return W.clone(); });
      const auto packed_copies = copies_beyond<pbllm::pack::PackedGemv>(
          cold_bytes, gemv.resident_bytes(), [&] { return pbllm::pack::PackedGemv(packed); });
      const double dense_cold = seconds_per_product(repeat, dense_copies, [&](const at::Tensor& w) { (void)at::mv(w, x); });
      const double fast_cold = seconds_per_product(
          repeat, packed_copies, [&](const pbllm::pack::PackedGemv& g) { (void)g(x, kernel); });
      std::printf("%-11s %d threads %s, cold: float32 at::mv %7.3f ms (%5.1f GB/s)   packed %s %7.3f ms = %5.2fx   "
                  "(%zu and %zu copies: %.0f and %.0f MiB, the last-level cache %lld MiB)\n",
                  shape.c_str(), at::get_num_threads(), dtype_name.c_str(), 1e3 * dense_cold,
                  W.nbytes() / dense_cold / 1e9, avx2 ? "avx2" : "portable", 1e3 * fast_cold, dense_cold / fast_cold,
                  dense_copies.size(), packed_copies.size(), dense_copies.size() * W.nbytes() / 1048576.0,
                  packed_copies.size() * gemv.resident_bytes() / 1048576.0, static_cast<long long>(cold_bytes / 2 >> 20));
    }
  });
}
