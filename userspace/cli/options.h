#pragma once
// Command-line parsing for `splicer SUBCOMMAND [options]` (DESIGN.md, "Interface").

#include <optional>
#include <string>
#include <vector>

#include "splicer/config.h"
#include "splicer/result.h"

namespace splicer::cli {

enum class Command { run, check, stats, selftest, upgrade, version, help };

inline constexpr const char* kDefaultConfigPath = "/etc/splicer/splicer.conf";
inline constexpr const char* kDefaultPinDir = "/sys/fs/bpf/splicer";

struct Options {
    Command command = Command::help;
    std::optional<std::string> config_path;
    std::optional<config::SpliceMode> splice_mode;  // overrides the config's splice_mode
    std::string pin_dir = kDefaultPinDir;
    std::optional<int> pid;  // upgrade: the daemon to signal
    bool json = false;  // stats: JSON, the metrics endpoint's families (README "Monitoring")
};

Result<Options> parse_options(const std::vector<std::string>& args);

std::string usage_text();

}  // namespace splicer::cli
