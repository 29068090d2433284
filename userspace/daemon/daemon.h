#pragma once
// `splicer run`: configuration -> listeners, data plane, event loop; serves until SIGTERM or
// SIGINT, then closes every connection, removes its pins and returns.

#include <optional>
#include <string>

#include "splicer/config.h"
#include "splicer/result.h"

namespace splicer::daemon {

struct RunOptions {
    std::optional<std::string> config_path;  // none: /etc/splicer/splicer.conf or the default
    std::optional<config::SpliceMode> splice_mode;
    std::string pin_dir;
};

Result<void> run(const RunOptions& options);

}  // namespace splicer::daemon
