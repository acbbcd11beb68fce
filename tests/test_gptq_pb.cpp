// The fused GPTQ-PB column loop against the plain-LibTorch restatement
// (tests/reference_gptq_pb.h) on random layers, and the bad inputs.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <functional>

#include "pbllm/quant/gptq_pb.h"
#include "pbllm/quant/hessian.h"
#include "pbllm/quant/layer_driver.h"
#include "gptq_pb_rows_avx2.h"
#include "random_layer.h"
#include "reference_gptq_pb.h"
#include "test_support.h"

#ifdef PBLLM_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "gptq_pb_block.h"
#endif

namespace pbllm::quant {
namespace {

using pbllm::testing::random_layer;
using pbllm::testing::ReferenceOptions;

GptqPbOptions to_options(const ReferenceOptions& r) {
  GptqPbOptions o;
  o.low.method = low_bit_method_from_name(r.method);
  o.metric = salient_metric_from_name(r.metric);
  o.low_frac = r.low_frac;
  o.high_bit = r.high_bit;
  o.blocksize = r.blocksize;
  o.groupsize = r.groupsize;
  o.percdamp = r.percdamp;
  o.disable_gptq = r.disable_gptq;
  o.inverse_factor = InverseFactor::reference;  // the restatement's three factorisations, bit for bit
  return o;
}

struct Shape {
  int64_t blocksize, groupsize;
  int high_bit;
};

TEST(GptqPb, FusedLoopEqualsTheRestatedLoop) {
  const std::vector<std::string> methods = low_bit_method_names();
  const std::vector<Shape> shapes = {{128, -1, 8}, {32, -1, 8}, {16, 32, 4}, {24, -1, 2}, {32, 64, 8}};
  const auto [W, H] = random_layer(48, 96, 7);
  int cases = 0;
  for (const std::string& method : methods)
    for (const char* metric : {"magnitude", "hessian"})
      for (double low_frac : {0.5, 0.8, 0.9, 0.95, 1.0}) {
        const Shape& shape = shapes[cases % shapes.size()];
        ReferenceOptions r;
        r.method = method;
        r.metric = metric;
        r.low_frac = low_frac;
        r.blocksize = shape.blocksize;
        r.groupsize = shape.groupsize;
        r.high_bit = shape.high_bit;
        r.disable_gptq = cases % 7 == 3;
        const auto expected = pbllm::testing::reference_gptq_pb(W, H, r);
        const auto result = gptq_pb_quantize(W, H, to_options(r), "test");
        const std::string label = method + " " + metric + " low_frac " + std::to_string(low_frac) + " blocksize " +
                                  std::to_string(r.blocksize) + " groupsize " + std::to_string(r.groupsize);
        EXPECT_TRUE(at::equal(result.binarized, expected.binarized)) << label;
        // Equal up to float rounding: a sign that a last-bit difference flips
        // changes one weight by at most a quantization step.
        const at::Tensor difference = (result.weight - expected.weight).abs();
        const int64_t differing = (difference > 1e-5).sum().item<int64_t>();
        EXPECT_LE(differing, W.numel() / 200) << label;
        EXPECT_NEAR(result.loss, expected.loss, 1e-3 * std::max(1.0, expected.loss)) << label;
        ++cases;
      }
  EXPECT_EQ(cases, 60);
}

// Calls check(options, label) for every method x metric x {-1, groupsize}.
void for_each_configuration(int64_t groupsize, int64_t blocksize,
                            const std::function<void(const GptqPbOptions&, const std::string&)>& check) {
  for (const std::string& method : low_bit_method_names())
    for (const char* metric : {"magnitude", "hessian"})
      for (int64_t groups : {int64_t{-1}, groupsize}) {
        ReferenceOptions r;
        r.method = method;
        r.metric = metric;
        r.groupsize = groups;
        r.blocksize = blocksize;
        check(to_options(r), std::string(method) + " " + metric + " " + std::to_string(groups));
      }
}

// The CUDA kernel's launch, emulated on the host (its phases, its thread to
// row mapping, its shared-memory staging, in the shape it would take on an
// H100: here 8 lanes a row, 4 rows a block), against the fused CPU loop:
// they run the same phase functions, so the results are identical.
TEST(GptqPb, EmulatedCudaKernelEqualsTheCpuPath) {
  const auto [W, H] = random_layer(200, 96, 13);
  for_each_configuration(64, 32, [&, &W = W, &H = H](GptqPbOptions options, const std::string& label) {
    const auto cpu = gptq_pb_quantize(W, H, options, "cpu");
    options.column_loop = ColumnLoop::emulated_cuda_kernel;
    const auto emulated = gptq_pb_quantize(W, H, options, "emulated");
    EXPECT_TRUE(at::equal(cpu.weight, emulated.weight)) << label;
    EXPECT_DOUBLE_EQ(cpu.loss, emulated.loss) << label;
  });
}

// The AVX2 column loop (8 rows a register) against the per-row loop: the
// same bits, for every method, metric and group size, with compensation and
// without, rows not a multiple of 8 (the last 5 run per row).
TEST(GptqPb, Avx2ColumnLoopEqualsThePerRowLoopBitForBit) {
  if (!kernels::gptq_pb_rows_avx2_available()) GTEST_SKIP() << "this CPU has no AVX2: only the per-row loop runs";
  const auto [W, H] = random_layer(205, 96, 29);
  for (const bool disable_gptq : {false, true})
    for_each_configuration(64, 32, [&, &W = W, &H = H](GptqPbOptions options, const std::string& label) {
      options.disable_gptq = disable_gptq;
      const auto avx2 = gptq_pb_quantize(W, H, options, "avx2");
      options.column_loop = ColumnLoop::fused_cpu_per_row;
      const auto per_row = gptq_pb_quantize(W, H, options, "per row");
      EXPECT_TRUE(at::equal(avx2.weight, per_row.weight)) << label << (disable_gptq ? " rtn" : "");
      EXPECT_EQ(avx2.loss, per_row.loss) << label;
    });
}

TEST(GptqPb, CudaKernelEqualsTheCpuPath) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA GPU on this machine: skipped (the emulated kernel test ran instead)";
  const auto [W, H] = random_layer(300, 256, 17);
  for_each_configuration(128, 128, [&, &W = W, &H = H](const GptqPbOptions& options, const std::string& label) {
    const auto cpu = gptq_pb_quantize(W, H, options, "cpu");
    const auto gpu = gptq_pb_quantize(W.cuda(), H.cuda(), options, "cuda");
    // Cholesky and GEMMs differ in the last bits between cuSOLVER / cuBLAS and
    // LAPACK / MKL. The hessian metric's mask comes from diag(U): a tie at the
    // threshold can swap two entries, and compensation then moves the rest of
    // those rows. So the masks are compared on their own, and the weights in
    // the rows whose masks agree, where a flipped sign moves a weight by at
    // most one step. (GptqPb.CudaBlockKernelEqualsItsHostEmulationBitForBit
    // gives both sides the same mask and U and asks for every bit.)
    const at::Tensor same_mask = (gpu.binarized.cpu() == cpu.binarized).all(1);
    EXPECT_LE((~same_mask).sum().item<int64_t>(), 2) << label << ": rows whose salient masks differ";
    const at::Tensor difference = (gpu.weight.cpu() - cpu.weight).abs().index({same_mask});
    EXPECT_LE((difference > 1e-4).sum().item<int64_t>(), W.numel() / 100) << label;
    EXPECT_NEAR(gpu.loss, cpu.loss, 1e-3 * std::max(1.0, cpu.loss)) << label;
  });
}

#ifdef PBLLM_WITH_CUDA
// Launches of the block kernel against its host emulation on the same
// inputs (U, mask, quantizer parameters): with --fmad=false the GPU must give
// the emulation's floats and doubles bit for bit, for every low-bit method,
// at a block that starts inside the matrix (first = 128), a partial last
// CUDA block of rows, in several launch shapes.
TEST(GptqPb, CudaBlockKernelEqualsItsHostEmulationBitForBit) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA GPU on this machine: skipped (the emulated kernel test ran instead)";
  const int64_t rows = 300, columns = 256, first = 128, n = 128;
  const auto [W, H] = random_layer(rows, columns, 23);
  const at::Tensor U = inverse_hessian_factor(H, 0.01, "test", nullptr, nullptr, InverseFactor::one_cholesky);
  const at::Tensor mask = at::rand({rows, columns}) < 0.9;
  const at::Tensor high_scale = at::rand({rows}) * 0.01 + 1e-3, high_zero = at::randint(0, 256, {rows}).to(at::kFloat);
  const at::Tensor low_mean = at::randn({rows}) * 0.01, low_scale = at::rand({rows}) * 0.1 + 1e-3;
  const at::Tensor low_zero = at::randint(0, 4, {rows}).to(at::kFloat);
  for (const LowBitMethodTraits& traits : kLowBitMethods) {
    const LowBitMethod method = traits.method;
    // Host copies, and device copies of the same values.
    std::vector<at::Tensor> host = {W.clone(), mask, U, high_scale, high_zero, low_mean, low_scale, low_zero,
                                    at::zeros({rows, n}), at::zeros({rows}, at::kDouble)};
    std::vector<at::Tensor> inputs;  // untouched copies: the emulation overwrites host's
    for (const at::Tensor& t : host) inputs.push_back(t.clone());
    auto problem = [&](std::vector<at::Tensor>& t) {
      return kernels::BlockProblem{t[0].data_ptr<float>(), t[1].data_ptr<bool>(), t[2].data_ptr<float>(), rows, columns,
                                   first, n, {t[3].data_ptr<float>(), t[4].data_ptr<float>(), 255.0f},
                                   {method, t[5].data_ptr<float>(), t[6].data_ptr<float>(), t[7].data_ptr<float>(),
                                    static_cast<float>(std::max(traits.levels - 1, 1))},
                                   true, t[8].data_ptr<float>(), t[9].data_ptr<double>()};
    };
    kernels::gptq_pb_block_emulated(problem(host), kernels::BlockLaunch{128, 1});  // one thread a row
    const int label = static_cast<int>(method);
    // On the legacy default stream and on a pool stream (Torch's current one
    // there, as pbllm launches it): the kernel runs on the stream it is given.
    // In the shape chosen for this GPU, and in others: every shape gives the
    // same bits (BlockLaunch.EveryShapeGivesTheOneThreadWalksBits on the host).
    const c10::cuda::CUDAStream pool = c10::cuda::getStreamFromPool();
    for (const bool on_pool : {false, true})
      for (const int lanes : {0, 1, 4, 32}) {
        const c10::cuda::CUDAStreamGuard guard(on_pool ? pool : c10::cuda::getDefaultCUDAStream());
        std::vector<at::Tensor> device;
        for (const at::Tensor& t : inputs) device.push_back(t.cuda());
        void* stream = c10::cuda::getCurrentCUDAStream().stream();
        if (lanes == 0) {
          kernels::gptq_pb_block(problem(device), stream);
        } else {
          kernels::gptq_pb_block(problem(device), {lanes == 32 ? 256 : 64, lanes}, stream);
        }
        // .cpu() copies on the current stream, after the kernel.
        const std::string where = "method " + std::to_string(label) + " pool stream " + std::to_string(on_pool) +
                                  " lanes " + std::to_string(lanes) + " (0: the chosen shape)";
        EXPECT_TRUE(at::equal(device[0].cpu(), host[0])) << "weights, " << where;
        EXPECT_TRUE(at::equal(device[8].cpu(), host[8])) << "errors, " << where;
        EXPECT_TRUE(at::equal(device[9].cpu(), host[9])) << "row losses, " << where;
      }
    EXPECT_FALSE(at::equal(host[0], W)) << "the block was quantized, method " << label;
  }
}
#endif

// The scores the radix select meets: squares of normals (spread over many
// exponents), heavy ties, zeros (also -0), denormals, huge values, one entry.
std::vector<at::Tensor> selection_cases() {
  at::manual_seed(5);
  const at::Tensor squares = at::randn({20000}).pow(2);
  return {squares,
          (squares * 4).round() / 4,
          at::cat({at::zeros({500}), -at::zeros({300}), squares.narrow(0, 0, 700)}),
          squares * 1e-40,  // denormals
          squares * 1e35,
          at::full({1}, 3.5f),
          at::ones({64})};
}

TEST(KthSmallestScore, RadixSelectEqualsKthvalue) {
  for (const at::Tensor& scores : selection_cases()) {
    const int64_t n = scores.numel();
    for (int64_t k : {int64_t{1}, n / 3 + 1, n / 2, (9 * n) / 10 + 1, n}) {
      if (k < 1) continue;
      const float expected = std::get<0>(scores.kthvalue(k)).item<float>();
      EXPECT_EQ(kth_smallest_score_by_radix(scores, k).item<float>(), expected) << "n " << n << " k " << k;
      EXPECT_EQ(kth_smallest_score(scores, k).item<float>(), expected) << "n " << n << " k " << k;
    }
  }
  EXPECT_THROW(kth_smallest_score_by_radix(at::ones({4}), 5), Error);
  EXPECT_THROW(kth_smallest_score_by_radix(at::ones({4}), 0), Error);
}

TEST(KthSmallestScore, OnCudaEqualsKthvalueOnTheCpu) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA GPU on this machine: skipped (the radix select ran on the CPU instead)";
  for (const at::Tensor& scores : selection_cases()) {
    const int64_t n = scores.numel();
    for (int64_t k : {int64_t{1}, n / 2, n})
      if (k >= 1)
        EXPECT_EQ(kth_smallest_score(scores.cuda(), k).item<float>(), std::get<0>(scores.kthvalue(k)).item<float>())
            << "n " << n << " k " << k;
  }
}

TEST(InverseFactor, LowerTriangularInverseEqualsTheTriangularSolve) {
  at::manual_seed(11);
  for (int64_t n : {1, 7, 512, 513, 1100}) {  // direct, one level, levels with odd halves
    const at::Tensor X = at::randn({2 * n, n});
    const at::Tensor L = at::linalg_cholesky(X.t().mm(X) / n + at::eye(n));
    const at::Tensor expected = at::linalg_solve_triangular(L, at::eye(n), /*upper=*/false);
    const at::Tensor inverse = lower_triangular_inverse(L);
    EXPECT_TRUE(at::allclose(inverse, expected, 1e-4, 1e-5)) << "n " << n;
    EXPECT_TRUE(at::equal(inverse.triu(1), at::zeros({n, n}))) << "n " << n << ": not lower triangular";
  }
}

// One Cholesky and one triangular inverse give the reference's U to float32
// rounding, and on stories260K the reference's numbers within the pinned tolerances
// (InverseFactors/QuantizeStories260K.MatchesTheReferenceRun/OneCholesky).
TEST(InverseFactor, OneCholeskyGivesTheReferenceFactor) {
  for (int64_t columns : {64, 700}) {
    const auto [W, H] = random_layer(16, columns, 4);
    const at::Tensor reference = inverse_hessian_factor(H, 0.01, "test", nullptr, nullptr, InverseFactor::reference);
    const at::Tensor one = inverse_hessian_factor(H, 0.01, "test", nullptr, nullptr, InverseFactor::one_cholesky);
    EXPECT_TRUE(at::equal(one.tril(-1), at::zeros_like(one))) << "upper triangular";
    EXPECT_LT((one - reference).abs().max().item<double>(), 1e-5 * reference.abs().max().item<double>()) << columns;
  }
  EXPECT_EQ(inverse_factor_from_name("one-cholesky"), InverseFactor::one_cholesky);
  EXPECT_THROW(inverse_factor_from_name("two"), Error);
}

// The driver factors each Hessian once for the Linears that share it: through
// a shared factor the result is the one gptq_pb_quantize gets alone, bit for
// bit, with a dead column and a Hessian that needs more damping too.
TEST(GptqPb, ASharedFactorGivesTheSameResult) {
  auto [W, H] = random_layer(24, 64, 6);
  H.select(0, 5).zero_();
  H.select(1, 5).zero_();  // column 5 never activated
  at::Tensor indefinite = H.clone();
  indefinite.diagonal().narrow(0, 3, 1).neg_();  // H[3, 3] < 0: needs retries
  for (const at::Tensor& hessian : {H, indefinite}) {
    GptqPbOptions options;
    options.metric = SalientMetric::hessian;
    const HessianFactor factor = factor_hessian(hessian, options, "test");
    const GptqPbResult alone = gptq_pb_quantize(W, hessian, options, "test");
    const GptqPbResult shared = gptq_pb_quantize(W, hessian, options, "test", &factor);
    EXPECT_TRUE(at::equal(alone.weight, shared.weight));
    EXPECT_TRUE(at::equal(alone.binarized, shared.binarized));
    EXPECT_EQ(alone.loss, shared.loss);
    EXPECT_EQ(alone.damping_retries, shared.damping_retries);
    EXPECT_EQ(alone.percdamp_used, shared.percdamp_used);
  }
  EXPECT_GT(factor_hessian(indefinite, GptqPbOptions{}, "test").damping_retries, 0) << "the second case retried";
  const HessianFactor other = factor_hessian(random_layer(24, 32, 6).second, GptqPbOptions{}, "test");
  EXPECT_THROW(gptq_pb_quantize(W, H, GptqPbOptions{}, "test", &other), Error);
}

// factor_hessian works on the Hessian itself, not a copy: its diagonal (dead
// columns set to 1, the damping, each retry's) is put back bit for bit,
// also when no damping helps and it throws; and the factor is the one a
// copy gives (inverse_hessian_factor copies), for both ways of making U.
TEST(GptqPb, FactorHessianLeavesTheHessianAsItWas) {
  auto [W, H] = random_layer(24, 64, 6);
  H.select(0, 5).zero_();
  H.select(1, 5).zero_();  // column 5 never activated: its diagonal is set to 1 for the factorisation
  at::Tensor indefinite = H.clone();
  indefinite.diagonal().narrow(0, 3, 1).neg_();  // needs retries
  const at::Tensor hopeless = -at::eye(64);        // negative definite: every damping fails
  for (const InverseFactor how : {InverseFactor::reference, InverseFactor::one_cholesky})
    for (const at::Tensor& hessian : {H, indefinite}) {
      const at::Tensor before = hessian.clone();
      GptqPbOptions options;
      options.inverse_factor = how;
      const HessianFactor factor = factor_hessian(hessian, options, "test");
      EXPECT_TRUE(at::equal(hessian, before)) << "the Hessian changed";
      at::Tensor dead_filled = hessian.clone();
      dead_filled.diagonal().masked_fill_(dead_filled.diagonal() == 0, 1.0);
      EXPECT_TRUE(at::equal(factor.upper, inverse_hessian_factor(dead_filled, options.percdamp, "test", nullptr,
                                                                 nullptr, how)));
    }
  const at::Tensor before = hopeless.clone();
  EXPECT_THROW(factor_hessian(hopeless, GptqPbOptions{}, "test"), Error);
  EXPECT_TRUE(at::equal(hopeless, before)) << "a failed factorisation left the Hessian changed";
}

TEST(GptqPb, SalientFractionFollowsLowFrac) {
  const auto [W, H] = random_layer(32, 64, 3);
  for (double low_frac : {0.0, 0.5, 0.9, 1.0}) {
    GptqPbOptions options;
    options.low_frac = low_frac;
    const auto result = gptq_pb_quantize(W, H, options, "test");
    EXPECT_NEAR(result.salient_fraction, 1 - low_frac, 1.0 / 64) << low_frac;
  }
}

TEST(GptqPb, CompensationLowersTheOutputError) {
  // GPTQ's point: with error compensation, X W_q^T is closer to X W^T.
  const auto [W, H] = random_layer(32, 64, 11);
  GptqPbOptions options;
  const auto compensated = gptq_pb_quantize(W, H, options, "test");
  options.disable_gptq = true;
  const auto rounded = gptq_pb_quantize(W, H, options, "test");
  auto output_error = [&, &W = W, &H = H](const at::Tensor& Q) {  // clang 14 captures no structured binding
    const at::Tensor delta = Q - W;
    return delta.matmul(H).mul(delta).sum().item<double>();  // trace(delta H delta^T)
  };
  EXPECT_LT(output_error(compensated.weight), 0.9 * output_error(rounded.weight));
}

TEST(GptqPb, GroupsizeMinusOneWorksWithAnyBlocksize) {
  const auto [W, H] = random_layer(16, 90, 5);  // 90 columns, blocksize 40: the reference asserts here
  GptqPbOptions options;
  options.blocksize = 40;
  const auto result = gptq_pb_quantize(W, H, options, "test");
  EXPECT_EQ(result.weight.sizes(), W.sizes());
  EXPECT_TRUE(at::isfinite(result.weight).all().item<bool>());
}

TEST(GptqPb, NotPositiveDefiniteHessianRetriesWithMoreDamping) {
  at::manual_seed(1);
  const at::Tensor W = at::randn({8, 4});
  // Eigenvalues -2 and 4 in the first two columns (mean diagonal 1): damping
  // 0.01, 0.1 and 1 fail, 10 works.
  const at::Tensor H = at::tensor({1.0f, 3.0f, 0.0f, 0.0f, 3.0f, 1.0f, 0.0f, 0.0f, 0.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0.0f,
                                   0.0f, 1.0f})
                           .view({4, 4});
  GptqPbOptions options;
  const auto result = gptq_pb_quantize(W, H, options, "layer 0 q_proj");
  EXPECT_EQ(result.damping_retries, 3);
  EXPECT_NEAR(result.percdamp_used, 10.0, 1e-9);
  EXPECT_TRUE(at::isfinite(result.weight).all().item<bool>());
}

TEST(GptqPb, BadInputsGiveOneLineErrors) {
  const auto [W, H] = random_layer(8, 32, 2);
  GptqPbOptions options;
  at::Tensor nan_weight = W.clone();
  nan_weight[1][2] = NAN;
  EXPECT_ERROR_CONTAINS(gptq_pb_quantize(nan_weight, H, options, "layer 3 fc1"), "layer 3 fc1: the weight has NaN");
  at::Tensor inf_hessian = H.clone();
  inf_hessian[0][0] = INFINITY;
  EXPECT_ERROR_CONTAINS(gptq_pb_quantize(W, inf_hessian, options, "layer 3 fc1"), "layer 3 fc1: the Hessian has NaN");
  EXPECT_ERROR_CONTAINS(gptq_pb_quantize(W, H.narrow(0, 0, 16), options, "x"), "do not match");
  options.low_frac = 1.5;
  EXPECT_ERROR_CONTAINS(gptq_pb_quantize(W, H, options, "x"), "--low_frac 1.5 is outside [0, 1]");
  options.low_frac = 0.9;
  options.high_bit = 0;
  EXPECT_ERROR_CONTAINS(gptq_pb_quantize(W, H, options, "x"), "--high_bit 0 is outside 1..16");
  options.high_bit = 8;
  options.groupsize = 48;
  options.blocksize = 32;
  EXPECT_ERROR_CONTAINS(gptq_pb_quantize(W, H, options, "x"), "--groupsize 48 must be -1 or a positive multiple");
}

TEST(HessianAccumulator, RunningScalingEqualsTwoOverNSumOfProducts) {
  at::manual_seed(4);
  const at::Tensor X = at::randn({5, 7, 6});
  HessianAccumulator accumulator(6);
  for (int64_t i = 0; i < 5; ++i) accumulator.add(X.narrow(0, i, 1));
  const at::Tensor flat = X.reshape({-1, 6});
  const at::Tensor expected = flat.t().matmul(flat) * (2.0 / 5);
  EXPECT_TRUE(at::allclose(accumulator.hessian(), expected, 1e-5, 1e-5));
  EXPECT_EQ(accumulator.sequences(), 5);
}

// Wider than kGramBlock: the symmetric update by row blocks (two whole ones
// and a partial one) against the reference's full GEMM: exactly symmetric,
// equal to float32 rounding, at both thread counts; its FLOPs about half.
TEST(HessianAccumulator, SymmetricUpdateEqualsTheFullProduct) {
  at::manual_seed(8);
  const int64_t columns = 2 * kGramBlock + 76;
  const at::Tensor X = at::randn({2, 300, columns});
  const int threads = at::get_num_threads();
  for (const int t : {1, threads}) {
    at::set_num_threads(t);
    HessianAccumulator accumulator(columns);
    accumulator.add(X.narrow(0, 0, 1));
    accumulator.add(X.narrow(0, 1, 1));
    at::Tensor expected = at::zeros({columns, columns});
    for (int64_t i = 0; i < 2; ++i) {  // the reference's running update
      expected.mul_(i / (i + 1.0));
      const at::Tensor scaled = X[i] * std::sqrt(2.0 / (i + 1));
      expected += scaled.t().matmul(scaled);
    }
    const at::Tensor& H = accumulator.hessian();
    EXPECT_TRUE(at::equal(H, H.t())) << t << " threads";
    EXPECT_LT((H - expected).abs().max().item<double>(), 1e-6 * expected.abs().max().item<double>()) << t << " threads";
  }
  at::set_num_threads(threads);
  const double full = 2.0 * 600 * columns * columns;
  EXPECT_NEAR(hessian_update_flops(600, columns) / full, 0.5 * (1 + static_cast<double>(kGramBlock) / columns), 0.06);
  EXPECT_EQ(hessian_update_flops(600, kGramBlock), 2.0 * 600 * kGramBlock * kGramBlock);
}

TEST(LinearSelection, FollowsTheReferenceRule) {
  LinearSelection selection;
  EXPECT_TRUE(selection.selected(0, "self_attn.q_proj"));
  selection.minlayer = 2;
  selection.maxlayer = 4;
  selection.quant_only = "mlp";
  EXPECT_FALSE(selection.selected(1, "mlp.up_proj"));
  EXPECT_TRUE(selection.selected(3, "mlp.up_proj"));
  EXPECT_FALSE(selection.selected(3, "self_attn.q_proj"));
  EXPECT_FALSE(selection.selected(4, "mlp.up_proj"));
  selection.invert = true;
  EXPECT_TRUE(selection.selected(3, "self_attn.q_proj"));
  EXPECT_FALSE(selection.selected(3, "mlp.up_proj"));
}

}  // namespace
}  // namespace pbllm::quant
