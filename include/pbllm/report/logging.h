// The library's only way to print: messages go through spdlog to stderr.
// The interface takes ready-made strings (build them with pbllm::str_cat) so
// that code compiled against Torch's bundled fmt never includes spdlog.
#pragma once

#include <string>

namespace pbllm::log {

enum class Level { debug, info, warn, error, off };

// Sets the level and the line format; tools call it once at startup.
void setup(Level level);
Level level_from_name(const std::string& name);  // "debug", "info", "warn", "error", "off"

void debug(const std::string& message);
void info(const std::string& message);
void warn(const std::string& message);
void error(const std::string& message);

}  // namespace pbllm::log
