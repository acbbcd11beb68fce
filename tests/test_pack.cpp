// The packed PB format: the mask codec against the entropy bound, exact round
// trips against the fake-quant values (every method, metric, group size,
// high_bit, checkpoint dtype), each corruption a clear error, and stories260K
// end to end (a packed model computes what the fake-quant model computes).
#include <ATen/ATen.h>
#include <sys/stat.h>

#include <fstream>

#include "pbllm/eval/perplexity.h"
#include "pbllm/io/checkpoint.h"
#include "pbllm/io/hf_export.h"
#include "pbllm/model/decoder.h"
#include "pbllm/pack/bit_stream.h"
#include "pbllm/pack/packed_gemv.h"
#include "pbllm/pack/packed_checkpoint.h"
#include "pbllm/quant/gptq_pb.h"
#include "pbllm/qat/binarized_linear.h"
#include "pbllm/quant/layer_driver.h"
#include "packed_gemv_row.h"
#include "random_layer.h"
#include "test_support.h"

namespace pbllm::pack {
namespace {

using pbllm::testing::ScratchDir;
using pbllm::testing::source_path;

at::Tensor mask_from_blocks(const EncodedMask& encoded, int64_t rows, int64_t columns) {
  const std::string what = "test mask";
  const MaskView view{encoded.stream.data(), encoded.stream.size(), encoded.index.data(), rows, columns,
                      encoded.rice_k, &what};
  check_mask_index(view, encoded.salient);
  at::Tensor mask = at::zeros({rows * columns}, at::kBool);
  std::vector<int64_t> positions;
  for (int64_t block = 0; block < view.blocks(); ++block) {
    view.block_positions(block, positions);
    for (const int64_t p : positions) mask[block * kMaskRowsPerBlock * columns + p] = true;
  }
  return mask.view({rows, columns});
}

TEST(MaskCodec, PositionsRoundTripAtEveryDensity) {
  at::manual_seed(3);
  for (const double density : {0.0, 0.001, 0.1, 0.5, 0.97, 1.0}) {
    const at::Tensor mask = at::rand({70, 53}) < density;  // 70 rows: two blocks, the last partial
    const EncodedMask encoded = encode_mask(mask);
    EXPECT_EQ(encoded.salient, mask.sum().item<int64_t>()) << density;
    EXPECT_TRUE(at::equal(mask_from_blocks(encoded, 70, 53), mask)) << density;
  }
}

TEST(MaskCodec, CostsLittleAboveTheEntropyBoundAtTenPercent) {
  at::manual_seed(5);
  const int64_t rows = 512, columns = 4096;
  const at::Tensor mask = at::rand({rows, columns}) < 0.1;
  const EncodedMask encoded = encode_mask(mask);
  const double bits = 8.0 * encoded.stream.size() / (rows * columns);
  const double bound = mask_entropy_bits_per_weight(rows * columns, encoded.salient);
  EXPECT_NEAR(bound, 0.469, 0.002);
  EXPECT_GT(bits, bound);
  EXPECT_LT(bits, 1.025 * bound) << "Rice coding at p = 0.1: " << bits << " bits per weight";
  EXPECT_EQ(encoded.rice_k, 3);
}

TEST(BitStream, ReadsPastTheEndAreErrors) {
  BitWriter writer;
  writer.put(5, 3);
  writer.put_unary(40);
  const std::string what = "test stream";
  BitReader reader(writer.bytes().data(), writer.bytes().size(), 0, &what);
  EXPECT_EQ(reader.get(3), 5u);
  EXPECT_EQ(reader.get_unary(), 40u);
  EXPECT_ERROR_CONTAINS(reader.get(16), "test stream: truncated or corrupt");
  BitReader ones(writer.bytes().data(), 2, 3, &what);  // 13 one bits, then the end: no terminating zero
  EXPECT_ERROR_CONTAINS(ones.get_unary(), "truncated or corrupt");
  EXPECT_EQ(pack_codes({1, 2, 3, 7, 0}, 3), (std::vector<uint8_t>{0xd1, 0x0e}));
  EXPECT_EQ(code_at(pack_codes({1, 2, 3, 7, 0}, 3).data(), 3, 3), 7u);
}

TEST(PackedLinear, DecodesToTheFakeQuantWeightsBitForBit) {
  const auto [W, H] = pbllm::testing::random_layer(70, 96, 11);
  const at::ScalarType dtypes[] = {at::kFloat, at::kHalf, at::kBFloat16};
  int cases = 0;
  for (const LowBitMethodTraits& traits : kLowBitMethods)
    for (const auto metric : {quant::SalientMetric::magnitude, quant::SalientMetric::hessian})
      for (const int64_t groupsize : {int64_t{-1}, int64_t{32}})
        for (const int high_bit : {2, 3, 4, 5, 6, 7, 8}) {
          quant::GptqPbOptions options;
          options.low.method = traits.method;
          options.metric = metric;
          options.groupsize = groupsize;
          options.blocksize = 32;
          options.high_bit = high_bit;
          options.low_frac = 0.8;
          const std::string label = str_cat(traits.name, " metric ", static_cast<int>(metric), " groupsize ",
                                            groupsize, " high_bit ", high_bit);
          // The weights as a checkpoint of that dtype holds them: a 16-bit one
          // stores every row's high-bit range in the dtype.
          const at::ScalarType dtype = dtypes[cases++ % 3];
          const auto result = quant::gptq_pb_quantize(W.to(dtype).to(at::kFloat), H, options, label);
          const PackedLinear packed = encode_linear(quant::quantized_linear(result, options, dtype), label);
          EXPECT_EQ(packed.salient, (~result.binarized).sum().item<int64_t>()) << label;
          EXPECT_EQ(packed.high_range.defined(), dtype != at::kFloat) << label;
          EXPECT_TRUE(at::equal(decode_linear(packed), result.weight.to(dtype).to(at::kFloat))) << label;
        }
  EXPECT_EQ(cases, 6 * 2 * 2 * 7);
}

// A hand-made xnor Linear: row 0 = mean 0.5 +- 0.125, one weight exactly at
// the mean (torch.sign gives 0 there and the reference keeps the mean).
pack::QuantizedLinear hand_made_xnor() {
  QuantizedLinear linear;
  linear.weight = at::tensor({0.625f, 0.375f, 0.5f, 0.625f, 0.75f, -0.25f, 0.25f, -0.25f}).view({2, 4});
  linear.salient = at::tensor({0, 0, 0, 0, 1, 0, 0, 0}).to(at::kBool).view({2, 4});
  linear.high_scale = at::tensor({0.25f, 0.25f});
  linear.high_zero = at::tensor({1.0f, 1.0f});
  linear.low_mean = at::tensor({0.5f, 0.0f}).view({1, 2});
  linear.low_scale = at::tensor({0.125f, 0.25f}).view({1, 2});
  linear.low_zero = at::zeros({1, 2});
  linear.high_bit = 3;
  return linear;
}

TEST(PackedLinear, KeepsAnXnorWeightEqualToItsMean) {
  const QuantizedLinear linear = hand_made_xnor();
  const PackedLinear packed = encode_linear(linear, "hand-made");
  ASSERT_EQ(packed.zero_signs.numel(), 1);
  EXPECT_EQ(packed.zero_signs.item<int64_t>(), 2);
  EXPECT_EQ(packed.salient, 1);
  EXPECT_TRUE(at::equal(decode_linear(packed), linear.weight));
}

TEST(PackedLinear, RefusesValuesOffTheirGrid) {
  QuantizedLinear linear = hand_made_xnor();
  linear.weight[1][1] = 0.3f;  // neither 0 - 0.25 nor 0 + 0.25
  EXPECT_ERROR_CONTAINS(encode_linear(linear, "hand-made"), "hand-made: weight [1, 1] = 0.3 is not a xnor value of its row");
  linear = hand_made_xnor();
  linear.weight[1][0] = 0.7f;  // salient, between 0.5 and 0.75 on the 3-bit grid of step 0.25
  linear.salient[1][0] = true;
  EXPECT_ERROR_CONTAINS(encode_linear(linear, "hand-made"), "is salient but not on its row's 3-bit grid");
}

// y = W x from the packed layout, both kernels, against the decoded matrix's
// product in double: equal up to float32 summation order.
void expect_gemv_equals_decoded(const PackedLinear& packed, const std::string& label) {
  const PackedGemv gemv(packed);
  const at::Tensor x = at::randn({packed.columns});
  const at::Tensor W = decode_linear(packed);
  const at::Tensor expected = W.to(at::kDouble).mv(x.to(at::kDouble));
  const double scale = W.abs().to(at::kDouble).mv(x.abs().to(at::kDouble)).max().item<double>();
  std::vector<GemvKernel> kernels = {GemvKernel::portable};
  if (PackedGemv::avx2_available()) kernels.push_back(GemvKernel::avx2);
  for (const GemvKernel kernel : kernels) {
    const at::Tensor y = gemv(x, kernel).to(at::kDouble);
    EXPECT_LT((y - expected).abs().max().item<double>(), 1e-5 * scale) << label << " kernel " << static_cast<int>(kernel);
  }
}

TEST(PackedGemv, EqualsTheDecodedMatrixTimesX) {
  // Columns not a multiple of 64 (the padding), rows across several 64-row chunks (the threads).
  for (const at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
    const auto linear = pbllm::testing::random_quantized_linear(200, 300, 0.9, 7, dtype);
    expect_gemv_equals_decoded(encode_linear(linear, "random"), str_cat("random ", at::toString(dtype)));
  }
  // The layout's edges: fewer rows than a block of 8, columns not a whole
  // triplet, one column, rows past a whole block, more than 8 salient a row.
  for (const auto& [rows, columns] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {5, 2}, {9, 3}, {8, 4}, {17, 67}, {3, 200}})
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      const auto linear = pbllm::testing::random_quantized_linear(rows, columns, 0.9, 11, dtype);
      expect_gemv_equals_decoded(encode_linear(linear, "edge"), str_cat("edge ", rows, "x", columns));
    }
  // GPTQ-PB's own output, xnor and sign, one group per row and groups of 64 and
  // 32 columns (groups padded to whole triplets of the layout).
  const auto [W, H] = pbllm::testing::random_layer(70, 192, 19);
  for (const LowBitMethod method : {LowBitMethod::xnor, LowBitMethod::sign})
    for (const int64_t groupsize : {int64_t{-1}, int64_t{64}, int64_t{32}}) {
      quant::GptqPbOptions options;
      options.low.method = method;
      options.groupsize = groupsize;
      options.blocksize = 32;
      const auto result = quant::gptq_pb_quantize(W, H, options, "gemv");
      const PackedLinear packed = encode_linear(quant::quantized_linear(result, options, at::kFloat), "gemv");
      ASSERT_TRUE(PackedGemv::supports(packed));
      expect_gemv_equals_decoded(packed, str_cat(low_bit_method_traits(method).name, " groupsize ", groupsize));
    }
  // A weight at its row mean (xnor sign 0) is corrected after the kernel.
  expect_gemv_equals_decoded(encode_linear(hand_made_xnor(), "hand-made"), "hand-made");
}

// pbllm-qat's weights: salient ones on the reference's 8-bit grid (code *
// step + offset, the offset round(min) or min: no integer zero point holds
// those floats), the rest sign(w) times a scale, in every checkpoint dtype;
// decoded bit for bit, and the GEMV (float32: codes on the affine grid) equal.
TEST(PackedLinear, AffineGridHoldsQatsEightBitValues) {
  for (const at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16})
    for (const bool unrounded : {false, true}) {
      at::manual_seed(23);
      at::Tensor W = (at::randn({40, 70}) * 0.7).to(dtype).to(at::kFloat);
      W[3].fill_(0.3f);  // a row kept as it is (range 0)
      const at::Tensor scale = at::rand({40, 1}) * 0.1;
      QuantizedLinear q;
      q.salient = at::rand({40, 70}) < 0.1;
      q.salient[3][5] = true;
      q.weight = at::where(q.salient, qat::weight_quant_8bit(W, unrounded), W.sign() * scale);
      const qat::EightBitGrid grid = qat::eight_bit_grid(W, unrounded);
      q.high_grid = HighGrid::affine;
      q.high_scale = grid.step;
      q.high_zero = grid.offset;
      q.low_mean = at::zeros({1, 40});
      q.low_scale = scale.view({1, 40});
      q.dtype = dtype;
      const std::string label = str_cat(at::toString(dtype), unrounded ? " min" : " round(min)");
      const PackedLinear packed = encode_linear(q, label);
      EXPECT_TRUE(packed.high_offset.defined() && !packed.high_zero.defined() && !packed.high_range.defined()) << label;
      EXPECT_TRUE(at::equal(decode_linear(packed), q.weight.to(dtype).to(at::kFloat))) << label;
      expect_gemv_equals_decoded(packed, label);
      // The same values on GPTQ-PB's zero-point grid of that step: not held exactly.
      q.high_grid = HighGrid::zero_point;
      q.high_zero = at::round(-grid.offset / grid.step);
      EXPECT_ERROR_CONTAINS(encode_linear(q, label), "is salient but not on its row's 8-bit grid");
    }
}

TEST(PackedGemv, HalfBitsToFloatEqualsTorch) {
  // Every finite half (exponent field below 31): zeros, subnormals, normals, both signs.
  const at::Tensor bits = at::arange(0, 65536, at::kInt).to(at::kShort);
  const at::Tensor expected = bits.view(at::kHalf).to(at::kFloat).contiguous();
  for (uint32_t h = 0; h < 65536; ++h) {
    if (((h >> 10) & 0x1fu) == 0x1fu) continue;  // infinities and NaNs: never a decoded weight
    const float value = kernels::half_bits_to_float(h);
    ASSERT_EQ(std::memcmp(&value, expected.data_ptr<float>() + h, 4), 0) << "half bits " << h;
  }
}

TEST(PackedGemv, RefusesWhatItCannotRun) {
  QuantizedLinear linear = hand_made_xnor();
  linear.method = LowBitMethod::two_bit;
  linear.weight = at::zeros({2, 4});
  linear.salient = at::zeros({2, 4}, at::kBool);
  linear.low_scale = at::ones({1, 2});
  linear.low_zero = at::zeros({1, 2});
  const PackedLinear packed = encode_linear(linear, "two-bit");
  EXPECT_FALSE(PackedGemv::supports(packed));
  EXPECT_ERROR_CONTAINS(PackedGemv{packed}, "the packed GEMV takes xnor / sign Linears");
  const PackedGemv gemv(encode_linear(hand_made_xnor(), "hand-made"));
  EXPECT_ERROR_CONTAINS(gemv(at::zeros({5})), "x has shape [5], expected [4]");
}

// A packed checkpoint folder of one Linear "w" (the hand-made one unless
// given), its tensors and metadata rewritten by `corrupt` before saving.
void write_packed_folder(const std::filesystem::path& dir,
                         const std::function<void(io::NamedTensors&, std::map<std::string, std::string>&)>& corrupt,
                         const QuantizedLinear& linear = hand_made_xnor()) {
  std::filesystem::create_directories(dir);
  io::write_text_file(dir / "config.json", "{}");
  const auto packed = std::make_shared<const PackedLinear>(encode_linear(linear, "w"));
  save_packed_safetensors(dir / kPackedWeightsFile, {{"w", at::zeros_like(linear.weight)}}, {{"w", packed}},
                          {{"note", "test"}});
  const io::SafetensorsFile file((dir / kPackedWeightsFile).string());
  io::NamedTensors tensors;
  for (const std::string& name : file.names()) tensors.emplace_back(name, file.tensor(name).clone());
  std::map<std::string, std::string> metadata = file.metadata();
  corrupt(tensors, metadata);
  io::save_safetensors((dir / kPackedWeightsFile).string(), tensors, metadata);
}

void set_tensor(io::NamedTensors& tensors, const std::string& name, const at::Tensor& value) {
  for (auto& [key, tensor] : tensors)
    if (key == name) tensor = value;
}

void edit_linear_metadata(std::map<std::string, std::string>& metadata, const char* key, const nlohmann::json& value) {
  nlohmann::json linears = nlohmann::json::parse(metadata["pbllm.linears"]);
  linears["w"][key] = value;
  metadata["pbllm.linears"] = linears.dump();
}

TEST(PackedCheckpoint, CorruptFilesAreClearErrors) {
  ScratchDir scratch;
  auto read = [&](const std::string& name) {
    return read_packed_linears(io::Checkpoint::open((scratch / name).string()));
  };
  write_packed_folder(scratch / "good", [](auto&, auto&) {});
  EXPECT_TRUE(at::equal(decode_linear(*read("good").at("w")), hand_made_xnor().weight));

  write_packed_folder(scratch / "truncated_codes", [](io::NamedTensors& t, auto&) {
    set_tensor(t, "w.pb.low_codes", at::zeros({0}, at::kByte));
  });
  EXPECT_ERROR_CONTAINS(read("truncated_codes"), "w: tensor 'low_codes' is Byte [0], expected Byte [1]");
  write_packed_folder(scratch / "mask_count", [](auto&, auto& m) { edit_linear_metadata(m, "salient", 2); });
  EXPECT_ERROR_CONTAINS(read("mask_count"), "the mask holds 1 salient weights, the metadata says 2");
  write_packed_folder(scratch / "truncated_mask", [](io::NamedTensors& t, auto&) {
    set_tensor(t, "w.pb.mask", at::zeros({0}, at::kByte));
  });
  EXPECT_ERROR_CONTAINS(read("truncated_mask"), "points past the end of the mask stream");
  write_packed_folder(scratch / "flipped_mask", [](io::NamedTensors& t, auto&) {
    set_tensor(t, "w.pb.mask", at::zeros({1}, at::kByte));  // gap 0 in 2 bits (k = 1) where the index says 4
  });
  EXPECT_ERROR_CONTAINS(read("flipped_mask"), "w: mask block 0 ends at bit 2, the index says 4 (corrupt mask)");
  write_packed_folder(scratch / "long_mask", [](io::NamedTensors& t, auto&) {
    set_tensor(t, "w.pb.mask", at::zeros({2}, at::kByte));
  });
  EXPECT_ERROR_CONTAINS(read("long_mask"), "the mask stream has 2 bytes, its index ends at bit 4");
  write_packed_folder(scratch / "zero_signs", [](io::NamedTensors& t, auto&) {
    set_tensor(t, "w.pb.zero_signs", at::arange(8, at::kLong));
  });
  EXPECT_ERROR_CONTAINS(read("zero_signs"), "zero_signs lists 8 weights, more than the 7 non-salient ones");
  write_packed_folder(scratch / "nan", [](io::NamedTensors& t, auto&) {
    set_tensor(t, "w.pb.high_scale", at::full({2}, NAN));
  });
  EXPECT_ERROR_CONTAINS(read("nan"), "w: a quantizer parameter is NaN or Inf");
  write_packed_folder(scratch / "nan_values", [](io::NamedTensors& t, auto&) {
    set_tensor(t, "w.pb.low_values", at::full({1, 2, 2}, NAN));
  });
  EXPECT_ERROR_CONTAINS(read("nan_values"), "w: a quantizer parameter is NaN or Inf");
  write_packed_folder(scratch / "zero_sign_values", [](io::NamedTensors& t, auto&) {
    set_tensor(t, "w.pb.zero_sign_values", at::zeros({0}));
  });
  EXPECT_ERROR_CONTAINS(read("zero_sign_values"), "w: tensor 'zero_sign_values' is Float [0], expected Float [1]");
  write_packed_folder(scratch / "version", [](auto&, auto& m) { m["pbllm.format_version"] = "4"; });
  EXPECT_ERROR_CONTAINS(read("version"), "packed format version 4 is not one this pbllm reads (2 to 3)");
  write_packed_folder(scratch / "version1", [](auto&, auto& m) { m["pbllm.format_version"] = "1"; });
  EXPECT_ERROR_CONTAINS(read("version1"), "packed format version 1 is not one this pbllm reads (2 to 3)");
  write_packed_folder(scratch / "version3", [](auto&, auto& m) { m["pbllm.format_version"] = "3"; });
  EXPECT_TRUE(at::equal(decode_linear(*read("version3").at("w")), hand_made_xnor().weight));
  write_packed_folder(scratch / "affine_in_2", [](auto&, auto& m) { edit_linear_metadata(m, "high_grid", "affine"); });
  EXPECT_ERROR_CONTAINS(read("affine_in_2"), "an affine high-bit grid in a format version 2 file");
  write_packed_folder(scratch / "grid_name", [](auto&, auto& m) { edit_linear_metadata(m, "high_grid", "log"); });
  EXPECT_ERROR_CONTAINS(read("grid_name"), "high-bit grid \"log\" is not zero_point or affine");
  write_packed_folder(scratch / "affine_without_offset", [](auto&, auto& m) {
    m["pbllm.format_version"] = "3";
    edit_linear_metadata(m, "high_grid", "affine");
  });
  EXPECT_ERROR_CONTAINS(read("affine_without_offset"), "an affine high-bit grid has no 'high_zero' or 'high_range'");
  write_packed_folder(scratch / "offset_in_zero_point", [](io::NamedTensors& t, auto&) {
    t.emplace_back("w.pb.high_offset", at::zeros({2}));
  });
  EXPECT_ERROR_CONTAINS(read("offset_in_zero_point"), "tensor 'high_offset' belongs to an affine high-bit grid");
  write_packed_folder(scratch / "shape", [](auto&, auto& m) { edit_linear_metadata(m, "shape", {80, 4}); });
  EXPECT_ERROR_CONTAINS(read("shape"), "w: tensor 'mask_index' is Long [2, 2], expected Long [3, 2]");
  write_packed_folder(scratch / "method", [](auto&, auto& m) { edit_linear_metadata(m, "method", "sign"); });
  EXPECT_ERROR_CONTAINS(read("method"), "w: tensor 'low_values' is not part of a sign Linear");
  write_packed_folder(scratch / "stray", [](io::NamedTensors& t, auto&) {
    t.emplace_back("v.pb.mask", at::zeros({1}, at::kByte));
  });
  EXPECT_ERROR_CONTAINS(read("stray"), "tensor 'v.pb.mask' belongs to no Linear listed");
  write_packed_folder(scratch / "json", [](auto&, auto& m) { m["pbllm.linears"] = "{"; });
  EXPECT_ERROR_CONTAINS(read("json"), "__metadata__ \"pbllm.linears\" is not JSON");
  write_packed_folder(scratch / "key", [](auto&, auto& m) {
    nlohmann::json linears = nlohmann::json::parse(m["pbllm.linears"]);
    linears["w"].erase("rice_k");
    m["pbllm.linears"] = linears.dump();
  });
  EXPECT_ERROR_CONTAINS(read("key"), "Linear w: no \"rice_k\"");
  write_packed_folder(scratch / "type", [](auto&, auto& m) { edit_linear_metadata(m, "high_bit", "eight"); });
  EXPECT_ERROR_CONTAINS(read("type"), "\"high_bit\" has the wrong type");
  write_packed_folder(scratch / "overflow", [](auto&, auto& m) {
    edit_linear_metadata(m, "shape", {4, (int64_t{1} << 62) + 1});
  });
  EXPECT_ERROR_CONTAINS(read("overflow"), "w: shape [4, 4611686018427387905] is too large for a Linear");
  write_packed_folder(scratch / "fraction", [](auto&, auto& m) { edit_linear_metadata(m, "shape", {2.5, 4}); });
  EXPECT_ERROR_CONTAINS(read("fraction"), "Linear w: \"shape\" is 2.5, not an integer");
  write_packed_folder(scratch / "salient_zero_sign", [](io::NamedTensors& t, auto&) {
    set_tensor(t, "w.pb.zero_signs", at::tensor({int64_t{4}}));  // weight [1, 0] is the salient one
  });
  EXPECT_ERROR_CONTAINS(read("salient_zero_sign"), "zero_signs lists weight 4, which the mask says is salient");
  write_packed_folder(scratch / "negative_scale", [](io::NamedTensors& t, auto&) {
    set_tensor(t, "w.pb.high_scale", at::tensor({-0.25f, 0.25f}));
  });
  EXPECT_ERROR_CONTAINS(read("negative_scale"), "w: a high-bit scale is not positive");
  write_packed_folder(scratch / "unknown_part", [](io::NamedTensors& t, auto&) {
    t.emplace_back("w.pb.low_mean", at::zeros({1, 2}));  // a version 1 part
  });
  EXPECT_ERROR_CONTAINS(read("unknown_part"), "tensor 'w.pb.low_mean' is not a part of a xnor Linear in this format");
  write_packed_folder(scratch / "gap", [](io::NamedTensors& t, auto&) {
    set_tensor(t, "w.pb.mask", at::tensor({0x7f}).to(at::kByte));  // quotient 7: a gap past the 8 weights
  });
  EXPECT_ERROR_CONTAINS(read("gap"), "truncated or corrupt");
}

TEST(PackedLinear, SixteenBitRowsStoreTheirRangeAndXnorItsTwoValues) {
  // A 16-bit checkpoint's row range reproduces the high-bit grid (32 bits a
  // row, not 40), xnor keeps its two values in the dtype (32 bits, not 64).
  for (const at::ScalarType dtype : {at::kHalf, at::kBFloat16}) {
    const QuantizedLinear linear = pbllm::testing::random_quantized_linear(70, 96, 0.9, 4, dtype);
    const PackedLinear packed = encode_linear(linear, "w");
    ASSERT_TRUE(packed.high_range.defined()) << at::toString(dtype);
    EXPECT_EQ(packed.high_range.scalar_type(), dtype);
    EXPECT_FALSE(packed.tensors().count("high_scale"));
    EXPECT_TRUE(at::equal(packed.high_scale, linear.high_scale));  // derived, bit for bit
    EXPECT_TRUE(at::equal(packed.high_zero.to(at::kFloat), linear.high_zero));
    EXPECT_EQ(packed.low_values.sizes(), at::IntArrayRef({1, 70, 2}));
    EXPECT_TRUE(at::equal(decode_linear(packed), linear.weight.to(dtype).to(at::kFloat)));
  }
  // float32 keeps the quantizer's scale and zero (its range would take 64 bits).
  EXPECT_FALSE(encode_linear(pbllm::testing::random_quantized_linear(8, 32, 0.9, 4), "w").high_range.defined());

  ScratchDir scratch;
  auto read = [&](const std::string& name) {
    return read_packed_linears(io::Checkpoint::open((scratch / name).string()));
  };
  const QuantizedLinear bf16 = pbllm::testing::random_quantized_linear(4, 32, 0.9, 4, at::kBFloat16);
  write_packed_folder(scratch / "good", [](auto&, auto&) {}, bf16);
  EXPECT_TRUE(at::equal(decode_linear(*read("good").at("w")), bf16.weight.to(at::kBFloat16).to(at::kFloat)));
  write_packed_folder(scratch / "empty_range", [](io::NamedTensors& t, auto&) {
    set_tensor(t, "w.pb.high_range", at::ones({4, 2}, at::kBFloat16));
  }, bf16);
  EXPECT_ERROR_CONTAINS(read("empty_range"), "w: high_range of row 0 is [1, 1], not a range");
  write_packed_folder(scratch / "both", [](io::NamedTensors& t, auto&) {
    t.emplace_back("w.pb.high_scale", at::ones({4}));
  }, bf16);
  EXPECT_ERROR_CONTAINS(read("both"), "w: stores both 'high_range' and 'high_scale' / 'high_zero'");
  write_packed_folder(scratch / "off_grid", [](io::NamedTensors& t, auto&) {
    set_tensor(t, "w.pb.high_range", at::tensor({1.0f, 2.0f}).repeat({4, 1}).to(at::kBFloat16));
  }, bf16);
  EXPECT_ERROR_CONTAINS(read("off_grid"), "w: high_range of row 0 gives the zero point -255, outside 0..255");
}

TEST(PackedLinear, RefusesParametersNoQuantizerGives) {
  const auto [W, H] = pbllm::testing::random_layer(16, 64, 3);
  auto packed_with = [&, &W = W, &H = H](LowBitMethod method) {
    quant::GptqPbOptions options;
    options.low.method = method;
    options.low.zero_point_per_row = true;
    options.blocksize = 64;
    return encode_linear(quant::quantized_linear(quant::gptq_pb_quantize(W, H, options, "w"), options, at::kFloat),
                         "w");
  };
  PackedLinear sign = packed_with(LowBitMethod::sign);
  sign.low_scale = -sign.low_scale - 1;
  EXPECT_ERROR_CONTAINS(check_packed_linear(sign), "w: a sign scale is negative");
  PackedLinear two_bit = packed_with(LowBitMethod::two_bit);
  two_bit.low_zero = two_bit.low_zero + 0.5;
  EXPECT_ERROR_CONTAINS(check_packed_linear(two_bit), "w: a 2bit zero point is not an integer");
  two_bit = packed_with(LowBitMethod::two_bit);
  two_bit.low_scale = at::zeros_like(two_bit.low_scale);
  EXPECT_ERROR_CONTAINS(check_packed_linear(two_bit), "w: a 2bit scale is not positive");
}

TEST(PackedCheckpoint, RefusesFoldersThatAreNotOneModel) {
  ScratchDir scratch;
  const auto checkpoint = io::Checkpoint::open(source_path("data/stories260K").string());
  auto model = model::DecoderModel::load(checkpoint, at::kCPU);
  // The embedding stored as a packed Linear: not a decoder layer's Linear.
  io::NamedTensors plain;
  for (const auto& [name, tensor] : model->weights())
    if (name != "model.embed_tokens.weight") plain.emplace_back(name, tensor);
  const PackedLinears packed = {{"model.embed_tokens.weight",
                                 std::make_shared<const PackedLinear>(encode_linear(
                                     pbllm::testing::random_quantized_linear(512, 64, 0.9, 1), "embed"))}};
  std::filesystem::create_directories(scratch / "embed");
  io::copy_model_side_files(checkpoint.dir(), scratch / "embed");
  save_packed_safetensors(scratch / "embed" / kPackedWeightsFile, plain, packed, {{"note", "test"}});
  EXPECT_ERROR_CONTAINS(model::DecoderModel::load(io::Checkpoint::open((scratch / "embed").string()), at::kCPU),
                        "'model.embed_tokens.weight' is stored as a packed Linear but is not a Linear weight of the model");
  // Both a plain and a packed weights file: one is stale.
  std::filesystem::copy_file(checkpoint.dir() / "model.safetensors", scratch / "embed" / "model.safetensors");
  EXPECT_ERROR_CONTAINS(io::Checkpoint::open((scratch / "embed").string()),
                        "holds both model.safetensors and model.pb.safetensors");
  // A FIFO as the weights file is refused at once (opening it would wait for a writer).
  std::filesystem::create_directories(scratch / "fifo");
  io::copy_model_side_files(checkpoint.dir(), scratch / "fifo");
  ASSERT_EQ(::mkfifo((scratch / "fifo" / "model.safetensors").c_str(), 0600), 0);
  EXPECT_ERROR_CONTAINS(io::Checkpoint::open((scratch / "fifo").string()), "model.safetensors: not a regular file");
}

// stories260K quantized with the packed Linears collected; the packed folder,
// loaded back, holds the fake-quant weights bit for bit and gives the same logits.
TEST(PackedCheckpoint, Stories260KPackedEqualsTheFakeQuantModel) {
  ScratchDir scratch;
  const auto checkpoint = io::Checkpoint::open(source_path("data/stories260K").string());
  auto model = model::DecoderModel::load(checkpoint, at::kCPU);
  std::vector<std::vector<int32_t>> windows;
  for (int sample = 0; sample < 4; ++sample) windows.push_back(std::vector<int32_t>(128, 0));
  for (int sample = 0; sample < 4; ++sample)
    for (int i = 0; i < 128; ++i) windows[sample][i] = (sample * 131 + i * 17) % 512;
  quant::GptqPbOptions options;
  options.metric = quant::SalientMetric::hessian;
  PackedLinears packed;
  quant::quantize_layers(*model, windows, options, quant::LinearSelection{}, {}, &packed);
  ASSERT_EQ(packed.size(), 35u);
  const io::NamedTensors weights(model->weights().begin(), model->weights().end());
  io::copy_model_side_files(checkpoint.dir(), scratch.path());
  save_packed_safetensors(scratch / kPackedWeightsFile, weights, packed, {{"note", "test"}});

  const auto saved = io::Checkpoint::open(scratch.path().string());
  const auto packed_model = model::DecoderModel::load(saved, at::kCPU);
  ASSERT_EQ(packed_model->packed_linears().size(), 35u);
  for (const auto& [name, linear] : packed_model->packed_linears())
    EXPECT_TRUE(at::equal(decode_linear(*linear), model->weight(name))) << name;
  const at::Tensor ids = at::tensor(std::vector<int64_t>(windows[0].begin(), windows[0].end())).view({1, -1});
  EXPECT_TRUE(at::equal(packed_model->forward(ids), model->forward(ids)));

  // Generation runs the packed GEMV (one token at a time): the same greedy ids.
  EXPECT_EQ(eval::greedy_continue(*packed_model, {1}, 48), eval::greedy_continue(*model, {1}, 48));

  const ModelSize size = measure_model_size(saved, packed_model->packed_linears(), model->parameter_count());
  EXPECT_EQ(size.file_bytes, static_cast<int64_t>(std::filesystem::file_size(scratch / kPackedWeightsFile)));
  EXPECT_EQ(size.linear_totals().weights, 226560);
  EXPECT_LT(size.file_bits_per_weight(), 10.0);  // 32 in the source
}

}  // namespace
}  // namespace pbllm::pack
