// Finding a checkpoint (folder or Hugging Face cache id), config.json parsing,
// weights layouts and the errors for broken ones.
#include <ATen/ops/randn.h>

#include <cstdlib>
#include <fstream>

#include "pbllm/io/checkpoint.h"
#include "pbllm/io/model_path.h"
#include "pbllm/model/config.h"
#include "pbllm/model/decoder.h"
#include "test_support.h"

namespace pbllm {
namespace {

namespace fs = std::filesystem;
using pbllm::testing::ScratchDir;
using pbllm::testing::source_path;

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() { old_.empty() ? ::unsetenv(name_) : ::setenv(name_, old_.c_str(), 1); }

 private:
  const char* name_;
  std::string old_;
};

// A copy of the bundled stories260K folder to break in various ways.
fs::path copy_stories(const ScratchDir& dir) {
  const fs::path target = dir / "model";
  fs::copy(source_path("data/stories260K"), target);
  for (const auto& entry : fs::directory_iterator(target))
    fs::permissions(entry.path(), fs::perms::owner_write, fs::perm_options::add);
  return target;
}

void write_text(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

TEST(ModelPath, LocalDirectory) {
  EXPECT_EQ(io::resolve_model_path(source_path("data/stories260K").string()), source_path("data/stories260K"));
}

TEST(ModelPath, HuggingFaceCacheIdThroughRefsMain) {
  ScratchDir dir;
  const fs::path snapshot = dir / "hub/models--karpathy--stories260K/snapshots/abc123";
  fs::create_directories(snapshot);
  fs::copy(source_path("data/stories260K"), snapshot);
  fs::create_directories(dir / "hub/models--karpathy--stories260K/refs");
  write_text(dir / "hub/models--karpathy--stories260K/refs/main", "abc123\n");
  {
    ScopedEnv hub("HF_HUB_CACHE", (dir / "hub").string());
    EXPECT_EQ(io::resolve_model_path("karpathy/stories260K"), snapshot);
  }
  {
    ScopedEnv unset_hub("HF_HUB_CACHE", "");
    ScopedEnv home("HF_HOME", dir.path().string());
    EXPECT_EQ(io::resolve_model_path("karpathy/stories260K"), snapshot);
    const auto model = model::DecoderModel::load(io::Checkpoint::open("karpathy/stories260K"), at::kCPU);
    EXPECT_EQ(model->num_layers(), 5);
  }
}

TEST(ModelPath, NotFoundNamesEveryPlaceLookedAt) {
  ScratchDir dir;
  ScopedEnv hub("HF_HUB_CACHE", (dir / "hub").string());
  try {
    io::resolve_model_path("facebook/opt-125m");
    FAIL() << "expected an error";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("facebook/opt-125m"), std::string::npos) << message;
    EXPECT_NE(message.find((dir / "hub/models--facebook--opt-125m/snapshots").string()), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "one line";
  }
}

TEST(ModelConfig, ParsesLlamaDefaults) {
  const auto config = model::ModelConfig::from_json(
      nlohmann::json::parse(R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
                                "num_attention_heads": 2, "intermediate_size": 16})"),
      "config.json");
  EXPECT_EQ(config.num_kv_heads, 2);
  EXPECT_EQ(config.head_dim, 4);
  EXPECT_DOUBLE_EQ(config.rope_theta, 10000.0);
  EXPECT_FALSE(config.tie_word_embeddings);
}

TEST(ModelConfig, ParsesOpt350mStyle) {
  const auto config = model::ModelConfig::from_json(
      nlohmann::json::parse(R"({"model_type": "opt", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
                                "num_attention_heads": 2, "ffn_dim": 16, "word_embed_proj_dim": 4,
                                "do_layer_norm_before": false})"),
      "config.json");
  EXPECT_EQ(config.architecture, model::Architecture::opt);
  EXPECT_EQ(config.word_embed_proj_dim, 4);
  EXPECT_FALSE(config.do_layer_norm_before);
  EXPECT_TRUE(config.tie_word_embeddings);
}

TEST(ModelConfig, Errors) {
  auto parse = [](const std::string& text) {
    return model::ModelConfig::from_json(nlohmann::json::parse(text), "x/config.json");
  };
  const std::string sizes = R"("vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 4)";
  EXPECT_ERROR_CONTAINS(parse(R"({"model_type": "gpt2", )" + sizes + "}"), "model_type 'gpt2' is not supported");
  EXPECT_ERROR_CONTAINS(parse(R"({"model_type": "llama", )" + sizes + "}"), "missing \"intermediate_size\"");
  EXPECT_ERROR_CONTAINS(parse(R"({"model_type": "llama", "intermediate_size": 4, "num_key_value_heads": 3, )" + sizes + "}"),
                        "not a multiple of num_key_value_heads");
  EXPECT_ERROR_CONTAINS(parse(R"({"model_type": "llama", "intermediate_size": "big", )" + sizes + "}"),
                        "\"intermediate_size\" is \"big\", not an integer in range");
  // A float where an integer belongs: converting 1e300 would be undefined behaviour (a fuzzer finding).
  EXPECT_ERROR_CONTAINS(parse(R"({"model_type": "llama", "intermediate_size": 1e300, )" + sizes + "}"),
                        "\"intermediate_size\" is 1e+300, not an integer in range");
  EXPECT_ERROR_CONTAINS(parse(R"({"model_type": "llama", "intermediate_size": 4, "rope_scaling": {"rope_type": "yarn"}, )" + sizes + "}"),
                        "rope_scaling of type 'yarn'");
}

TEST(Checkpoint, NoWeightsListsTheLayoutsLookedFor) {
  ScratchDir dir;
  const fs::path model = copy_stories(dir);
  fs::remove(model / "model.safetensors");
  EXPECT_ERROR_CONTAINS(io::Checkpoint::open(model.string()), "no weights (looked for model.safetensors");
}

TEST(Checkpoint, BadConfigJson) {
  ScratchDir dir;
  const fs::path model = copy_stories(dir);
  write_text(model / "config.json", "{\"model_type\": ");
  EXPECT_ERROR_CONTAINS(io::Checkpoint::open(model.string()), "config.json: bad JSON");
}

TEST(Checkpoint, ShardedIndexWithMissingShardOrTensor) {
  ScratchDir dir;
  const fs::path model = copy_stories(dir);
  fs::rename(model / "model.safetensors", model / "model-00001-of-00001.safetensors");
  write_text(model / "model.safetensors.index.json",
             R"({"weight_map": {"model.norm.weight": "model-00001-of-00001.safetensors",
                                "model.extra.weight": "model-00002-of-00002.safetensors"}})");
  EXPECT_ERROR_CONTAINS(io::Checkpoint::open(model.string()), "shard model-00002-of-00002.safetensors is missing");
  write_text(model / "model.safetensors.index.json",
             R"({"weight_map": {"model.ghost.weight": "model-00001-of-00001.safetensors"}})");
  EXPECT_ERROR_CONTAINS(io::Checkpoint::open(model.string()), "lists tensor 'model.ghost.weight'");
}

TEST(Checkpoint, MissingOrMisshapenTensorNamesTheFile) {
  ScratchDir dir;
  const fs::path model = copy_stories(dir);
  io::NamedTensors tensors;
  {
    const auto checkpoint = io::Checkpoint::open(model.string());
    for (const std::string& name : checkpoint.tensor_names())
      if (name != "model.layers.3.mlp.up_proj.weight") tensors.emplace_back(name, checkpoint.tensor(name).clone());
  }
  io::save_safetensors((model / "model.safetensors").string(), tensors);
  EXPECT_ERROR_CONTAINS(model::DecoderModel::load(io::Checkpoint::open(model.string()), at::kCPU),
                        "tensor 'model.layers.3.mlp.up_proj.weight' is missing");
  tensors.emplace_back("model.layers.3.mlp.up_proj.weight", at::randn({172, 63}));
  io::save_safetensors((model / "model.safetensors").string(), tensors);
  EXPECT_ERROR_CONTAINS(model::DecoderModel::load(io::Checkpoint::open(model.string()), at::kCPU),
                        "has shape [172, 63] but config.json implies [172, 64]");
}

TEST(Checkpoint, NotATorchZipArchive) {
  ScratchDir dir;
  const fs::path model = copy_stories(dir);
  fs::remove(model / "model.safetensors");
  write_text(model / "pytorch_model.bin", "\x80\x02}q\x00.");  // a legacy bare pickle
  EXPECT_ERROR_CONTAINS(io::Checkpoint::open(model.string()), "not a torch.save zip archive");
  write_text(model / "pytorch_model.bin", "PK\x03\x04garbage");
  EXPECT_ERROR_CONTAINS(io::Checkpoint::open(model.string()), "pytorch_model.bin: cannot unpickle");
  // The fuzzer's archive whose LONG_BINPUT index made LibTorch's unpickler grow its memo table to 10 GB.
  fs::copy_file(source_path("tests/fuzz/corpus/torch_pickle/regression-huge-memo-index"), model / "pytorch_model.bin",
                fs::copy_options::overwrite_existing);
  EXPECT_ERROR_CONTAINS(io::Checkpoint::open(model.string()), "pytorch_model.bin: pickle memo index 678701160 is out of range");
}

}  // namespace
}  // namespace pbllm
