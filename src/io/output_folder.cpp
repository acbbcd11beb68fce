#include "pbllm/io/output_folder.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "pbllm/core/check.h"
#include "pbllm/core/interrupt.h"
#include "pbllm/io/checkpoint.h"
#include "pbllm/io/hf_export.h"
#include "pbllm/report/logging.h"

namespace pbllm::io {
namespace fs = std::filesystem;

namespace {

// "out/", "./out" and "out" are one folder: absolute, normalised, no trailing slash.
fs::path plain_absolute(const fs::path& dir) {
  fs::path path = fs::absolute(dir).lexically_normal();
  if (path.filename().empty()) path = path.parent_path();
  return path;
}

bool is_within(const fs::path& inner, const fs::path& outer) {
  auto [outer_end, inner_end] = std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end());
  return outer_end == outer.end();
}

// An earlier pbllm output: a report.json that pbllm wrote, and nothing but the files pbllm writes.
std::string foreign_entry(const fs::path& dir) {
  bool has_report = false;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || !is_pbllm_output_file(name)) return name;
    has_report = has_report || name == "report.json";
  }
  if (!has_report) return "no report.json";
  try {
    const nlohmann::json report = read_json_file(dir / "report.json");
    if (report.is_object() && report.contains("versions") && report["versions"].is_object() &&
        report["versions"].contains("pbllm"))
      return "";
  } catch (const Error&) {
  }
  return "a report.json that pbllm did not write";
}

bool process_alive(long pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM; }

// "<name>.tmp.<pid>" or "<name>.old.<pid>" siblings of `dir` left by a killed run.
void remove_stale_temporaries(const fs::path& dir) {
  std::error_code error;
  if (!fs::is_directory(dir.parent_path(), error)) return;
  const std::string name = dir.filename().string();
  for (const fs::directory_entry& entry : fs::directory_iterator(dir.parent_path(), error)) {
    const std::string other = entry.path().filename().string();
    for (const char* tag : {".tmp.", ".old."}) {
      const std::string prefix = name + tag;
      if (other.rfind(prefix, 0) != 0) continue;
      const std::string pid = other.substr(prefix.size());
      if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos || pid.size() > 9) continue;
      if (process_alive(std::stol(pid))) continue;
      fs::remove_all(entry.path(), error);
      log::info(str_cat("removed ", entry.path().string(), ", left by an interrupted run"));
    }
  }
}

void fsync_folder(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // durability is best effort; atomicity does not depend on it
  ::fsync(fd);
  ::close(fd);
}

// Puts the complete `temporary` at `dir`; an existing `dir` is exchanged with
// it in one step and then removed from the temporary name.
void install_folder(const fs::path& temporary, const fs::path& dir) {
  std::error_code error;
  if (!fs::exists(fs::symlink_status(dir))) {
    fs::rename(temporary, dir);
  } else if (::renameat2(AT_FDCWD, temporary.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) == 0) {
    fs::remove_all(temporary, error);
  } else {
    // File systems without RENAME_EXCHANGE: two renames; a kill between them
    // leaves the earlier output under "<dir>.old.<pid>".
    const fs::path previous = str_cat(dir.string(), ".old.", ::getpid());
    fs::rename(dir, previous);
    fs::rename(temporary, dir);
    fs::remove_all(previous, error);
  }
  fsync_folder(dir.parent_path());
}

}  // namespace

bool is_pbllm_output_file(const std::string& name) {
  if (name == "report.json" || name == "model.safetensors" || name == "model.pb.safetensors") return true;
  for (const char* copied : kCopiedModelFiles)
    if (name == copied) return true;
  return false;
}

// The nearest existing ancestor of `path` must let us create entries in it.
void check_parent_writable(const fs::path& path, const std::string& where) {
  fs::path parent = plain_absolute(path).parent_path();
  while (!fs::exists(parent) && parent.has_parent_path() && parent != parent.parent_path()) parent = parent.parent_path();
  PBLLM_CHECK(fs::is_directory(parent), where, ": ", parent.string(), " is not a folder");
  PBLLM_CHECK(::access(parent.c_str(), W_OK | X_OK) == 0, where, ": cannot write in ", parent.string(), " (",
              std::strerror(errno), ")");
}

void check_output_folder(const fs::path& dir, const fs::path& model_dir, bool overwrite, const std::string& flag,
                         const std::vector<fs::path>& other_inputs) {
  PBLLM_CHECK(!dir.empty(), flag, " needs a folder name");
  const fs::path target = fs::weakly_canonical(plain_absolute(dir));
  const fs::path model = fs::weakly_canonical(plain_absolute(model_dir));
  const std::string where = str_cat(flag, " ", dir.string());
  PBLLM_CHECK(!is_within(model, target), where, " is or contains the model being read (", model.string(),
              "); choose another folder");
  for (const fs::path& input : other_inputs) {
    const fs::path read = fs::weakly_canonical(plain_absolute(input));
    PBLLM_CHECK(!is_within(read, target), where, " is or contains ", read.string(),
                ", which this run reads; choose another folder");
  }
  for (fs::path above = target; !above.empty() && above != above.parent_path(); above = above.parent_path()) {
    const std::string name = above.filename().string();
    const bool state_folder = name.size() >= 12 && name.compare(name.size() - 12, 12, ".pbllm-state") == 0;
    PBLLM_CHECK(!state_folder, where,
                " is inside the pbllm state folder ", above.string(), "; choose another folder");
  }
  PBLLM_CHECK(!is_within(fs::weakly_canonical(fs::current_path()), target), where,
              " is or contains the current folder; run from elsewhere or choose another folder");
  PBLLM_CHECK(!fs::is_symlink(plain_absolute(dir)), where,
              " is a symbolic link; give the folder itself (the link would be replaced, not followed)");
  const fs::file_status status = fs::status(dir);
  if (fs::exists(status)) {
    PBLLM_CHECK(fs::is_directory(status), where, " exists and is not a folder; refusing to replace it");
    if (!fs::is_empty(dir) && !overwrite) {
      const std::string foreign = foreign_entry(dir);
      PBLLM_CHECK(foreign.empty(), where, " is a non-empty folder that is not an earlier pbllm output (", foreign,
                  "); choose another folder, or pass --overwrite to replace it");
    }
  }
  check_parent_writable(dir, where);
}

void check_output_file(const fs::path& file, const fs::path& model_dir, const std::string& flag,
                       const std::vector<fs::path>& others) {
  PBLLM_CHECK(!file.empty(), flag, " needs a file name");
  const std::string where = str_cat(flag, " ", file.string());
  const fs::file_status status = fs::symlink_status(file);
  PBLLM_CHECK(!fs::exists(status) || fs::is_regular_file(status), where,
              " exists and is not a regular file (a folder, link, FIFO or device); refusing to replace it");
  PBLLM_CHECK(!is_within(fs::weakly_canonical(plain_absolute(file)), fs::weakly_canonical(plain_absolute(model_dir))),
              where, " is inside the model being read; choose another file");
  for (const fs::path& other : others)
    PBLLM_CHECK(!is_within(fs::weakly_canonical(plain_absolute(file)), fs::weakly_canonical(plain_absolute(other))),
                where, " is or is inside ", other.string(), ", which this run reads or writes; choose another file");
  check_parent_writable(file, where);
}

void write_folder_atomically(const fs::path& dir, const std::function<void(const fs::path&)>& fill) {
  const fs::path target = plain_absolute(dir);
  remove_stale_temporaries(target);
  const fs::path temporary = str_cat(target.string(), ".tmp.", ::getpid());
  std::error_code error;
  try {
    fs::create_directories(target.parent_path());
    fs::remove_all(temporary);
    fs::create_directory(temporary);
    fill(temporary);
    signal_self_for_test("save", 0);  // the tests' kill between the files and the exchange
    check_interrupted();
    fsync_folder(temporary);
    install_folder(temporary, target);
  } catch (const fs::filesystem_error& failure) {
    fs::remove_all(temporary, error);
    throw Error(str_cat("cannot write ", dir.string(), ": ", failure.code().message(), " (", failure.path1().string(),
                        ")"));
  } catch (...) {
    fs::remove_all(temporary, error);
    throw;
  }
}

}  // namespace pbllm::io
