#pragma once
// Which configuration `splicer run` uses: --config FILE, else /etc/splicer/splicer.conf,
// else the embedded default. Diagnostics are logged; errors fail start-up.

#include <optional>
#include <string>

#include "splicer/config.h"
#include "splicer/result.h"

namespace splicer::daemon {

inline constexpr const char* kSystemConfigPath = "/etc/splicer/splicer.conf";

Result<config::Config> load_run_config(const std::optional<std::string>& path);

}  // namespace splicer::daemon
