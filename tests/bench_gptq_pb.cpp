// pbllm_bench_gptq: GPTQ-PB on one Linear with a random positive-definite
// Hessian, three ways on the same device (scripts/bench_gptq.sh drives it):
//   fused      gptq_pb_quantize: the fused block loop (the CUDA kernel on a
//              GPU) plus one GEMM per block for the columns right of it;
//   gemms      those trailing-update GEMMs alone, the floor of the fused path;
//   setup      the U factor and the salient mask alone, so that the column
//              loop's own time (the kernel on a GPU) is fused - setup - gemms;
//   restated   the plain-LibTorch restated loop (tests/reference_gptq_pb.h),
//              column by column as the reference's Python does it.
// Prints one line per shape and, with --json, writes the figures.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>

#include "pbllm/core/check.h"
#include "pbllm/model/device.h"
#include "pbllm/quant/gptq_pb.h"
#include "bench_timing.h"
#ifdef PBLLM_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>

#include "gptq_pb_block.h"
#endif
#include "reference_gptq_pb.h"
#include "tool_main.h"

namespace {

// Times `work` by the tools' rule; reading its result back waits for the device.
template <typename Work>
double best_seconds(int repeat, Work&& work) {
  return pbllm::tools::best_seconds(repeat, [&] { (void)work().sum().template item<double>(); });
}

// H = 2/n X^T X over n = 2 x columns random activations (full rank), in float32.
at::Tensor random_hessian(int64_t columns, const at::Device& device) {
  const at::Tensor X = at::randn({2 * columns, columns}, at::TensorOptions().device(device));
  return X.t().matmul(X) * (2.0 / static_cast<double>(2 * columns));
}

// The block GEMMs gptq_pb_quantize runs for the columns right of each block.
at::Tensor trailing_gemms(at::Tensor W, const at::Tensor& U, const at::Tensor& errors, int64_t blocksize) {
  const int64_t columns = W.size(1);
  for (int64_t first = 0; first + blocksize < columns; first += blocksize) {
    const int64_t right = columns - first - blocksize;
    W.narrow(1, first + blocksize, right)
        .addmm_(errors, U.narrow(0, first, blocksize).narrow(1, first + blocksize, right), 1.0, -1.0);
  }
  return W;
}

// The block kernel's launch shape on this GPU for the Linear's blocks; "" on the CPU.
std::string block_launch(const at::Tensor& W, int64_t blocksize, const at::Device& device) {
#ifdef PBLLM_WITH_CUDA
  if (device.is_cuda()) {
    const c10::cuda::CUDAGuard on_device(device);
    pbllm::kernels::BlockProblem block{};
    block.rows = W.size(0);
    block.columns = W.size(1);
    block.n = std::min(blocksize, block.columns);
    return pbllm::kernels::describe(block, pbllm::kernels::gptq_pb_block_launch(block));
  }
#endif
  (void)W, (void)blocksize, (void)device;
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"GPTQ-PB on one Linear: fused path vs its GEMMs vs the restated loop", "pbllm_bench_gptq"};
  std::vector<std::string> shapes = {"4096x4096", "11008x4096", "4096x11008"};
  std::string device_name = "cpu", json_path;
  int repeat = 2;
  pbllm::tools::CommonFlags common;
  bool skip_restated = false;
  std::string inverse_factor = "one-cholesky";
  app.add_option("--shapes", shapes, "ROWSxCOLUMNS of each Linear (rows = out_features)")->delimiter(',');
  app.add_option("--device", device_name, "cpu, cuda or cuda:N");
  app.add_option("--repeat", repeat, "timed runs after one warm-up; the best is reported")->check(pbllm::tools::count_range());
  app.add_flag("--skip-restated", skip_restated, "do not time the restated loop (slow on a CPU)");
  app.add_option("--inverse-factor", inverse_factor, "reference or one-cholesky")
      ->check(CLI::IsMember({"reference", "one-cholesky"}));
  app.add_option("--json", json_path, "write the figures here");
  common.add_to(app);
  pbllm::tools::run_tool(app, argc, argv, [&] {
    common.apply();
    const at::Device device = pbllm::model::parse_device(device_name);
    c10::NoGradGuard no_grad;
    at::manual_seed(0);
    nlohmann::json rows = nlohmann::json::array();
    for (const std::string& shape : shapes) {
      const auto [out_features, in_features] = pbllm::tools::parse_shape(shape);
      const at::Tensor W = at::randn({out_features, in_features}, at::TensorOptions().device(device)) * 0.02;
      const at::Tensor H = random_hessian(in_features, device);
      pbllm::quant::GptqPbOptions options;  // xnor, low_frac 0.9, hessian metric, 8 bits, blocksize 128
      options.metric = pbllm::quant::SalientMetric::hessian;
      options.inverse_factor = pbllm::quant::inverse_factor_from_name(inverse_factor);
      const double fused = best_seconds(repeat, [&] { return pbllm::quant::gptq_pb_quantize(W, H, options, shape).weight; });
      const at::Tensor U =
          pbllm::quant::inverse_hessian_factor(H, options.percdamp, shape, nullptr, nullptr, options.inverse_factor);
      const at::Tensor errors = at::randn({out_features, options.blocksize}, W.options());
      const double gemms = best_seconds(repeat, [&] { return trailing_gemms(W.clone(), U, errors, options.blocksize); });
      const double setup = best_seconds(repeat, [&] {
        const at::Tensor factor =
            pbllm::quant::inverse_hessian_factor(H, options.percdamp, shape, nullptr, nullptr, options.inverse_factor);
        return pbllm::quant::binarized_mask(W, factor, options.metric, options.low_frac, options.groupsize);
      });
      const double loop = std::max(0.0, fused - setup - gemms);
      // The salient threshold over the whole matrix (groupsize -1): kthvalue
      // (one thread block on a GPU) against the radix select the GPU uses.
      const at::Tensor scores = W.pow(2).reshape({-1});
      const int64_t k = static_cast<int64_t>(static_cast<double>(scores.numel()) * options.low_frac) + 1;
      const double kthvalue = best_seconds(repeat, [&] { return std::get<0>(scores.kthvalue(k)); });
      const double radix = best_seconds(repeat, [&] { return pbllm::quant::kth_smallest_score_by_radix(scores, k); });
      double restated = 0;
      if (!skip_restated) {
        pbllm::testing::ReferenceOptions reference;
        reference.metric = "hessian";
        restated = best_seconds(repeat, [&] { return pbllm::testing::reference_gptq_pb(W, H, reference).weight; });
      }
      std::printf("%-11s fused %7.3f s = setup %7.3f + column loop %7.3f + trailing GEMMs %7.3f (loop / GEMMs %5.2fx)",
                  shape.c_str(), fused, setup, loop, gemms, loop / gemms);
      const std::string launch = block_launch(W, options.blocksize, device);
      if (!launch.empty()) std::printf(" [kernel: %s]", launch.c_str());
      if (skip_restated)
        std::printf(" on %s\n", device.str().c_str());
      else
        std::printf(" | restated loop %8.3f s (speed-up %6.1fx) on %s\n", restated, restated / fused, device.str().c_str());
      std::printf("%-11s threshold of %lld scores: kthvalue %7.4f s, radix select %7.4f s (%.1fx)\n", shape.c_str(),
                  static_cast<long long>(scores.numel()), kthvalue, radix, kthvalue / radix);
      std::fflush(stdout);
      rows.push_back({{"shape", shape}, {"fused_s", fused}, {"trailing_gemms_s", gemms}, {"setup_s", setup},
                      {"column_loop_s", loop}, {"threshold_kthvalue_s", kthvalue}, {"threshold_radix_s", radix},
                      {"restated_s", skip_restated ? nlohmann::json() : nlohmann::json(restated)},
                      {"device", device.str()}, {"block_launch", launch}});
    }
    if (!json_path.empty()) std::ofstream(json_path) << rows.dump(2) << "\n";
  });
}
