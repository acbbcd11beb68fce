// SHA-256 of files, for the data hashes in reports (FIPS 180-4).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace pbllm::io {

// Lower-case hex digest.
std::string sha256_hex(std::string_view bytes);
std::string sha256_file(const std::filesystem::path& path);

}  // namespace pbllm::io
