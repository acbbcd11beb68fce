#include "pbllm/io/model_path.h"

#include <cstdlib>
#include <fstream>

#include "pbllm/core/check.h"

namespace pbllm::io {
namespace fs = std::filesystem;

fs::path hugging_face_hub_cache() {
  if (const char* hub = std::getenv("HF_HUB_CACHE"); hub && *hub) return hub;
  if (const char* home = std::getenv("HF_HOME"); home && *home) return fs::path(home) / "hub";
  const char* user_home = std::getenv("HOME");
  return fs::path(user_home ? user_home : "/") / ".cache" / "huggingface" / "hub";
}

namespace {

// models--ORG--NAME/snapshots/<the revision named in refs/main>
fs::path cached_snapshot(const fs::path& cache, const std::string& model) {
  std::string folder = "models--";
  for (char c : model) folder += (c == '/') ? std::string("--") : std::string(1, c);
  const fs::path repo = cache / folder;
  std::ifstream ref(repo / "refs" / "main");
  std::string revision;
  if (!(ref >> revision)) return repo / "snapshots" / "<refs/main>";
  return repo / "snapshots" / revision;
}

}  // namespace

fs::path resolve_model_path(const std::string& model) {
  PBLLM_CHECK(!model.empty(), "MODEL is empty: give a directory or an ORG/NAME id");
  const fs::path local(model);
  if (fs::is_directory(local)) {
    PBLLM_CHECK(fs::exists(local / "config.json"), model, " is a directory but has no config.json");
    return local;
  }
  const fs::path cache = hugging_face_hub_cache();
  const fs::path snapshot = cached_snapshot(cache, model);
  if (fs::exists(snapshot / "config.json")) return snapshot;
  throw Error(str_cat("model '", model, "' not found: looked for a directory ", fs::absolute(local).string(),
                      " and for the Hugging Face cache snapshot ", snapshot.string(),
                      " (set HF_HUB_CACHE or HF_HOME; nothing is downloaded)"));
}

}  // namespace pbllm::io
