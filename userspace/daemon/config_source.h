#pragma once
// Which configuration `splicer run` uses: --config FILE, else /etc/splicer/splicer.conf,
// else the embedded default. Diagnostics are logged; errors fail start-up.
// The file's bytes come from `files`: the disk at start-up, and at a reload after the
// privilege drop the privileged helper's bundle (privsep/helper_link.h), which can read a
// root-only file the worker cannot.

#include <optional>
#include <string>

#include "privsep/file_bundle.h"
#include "splicer/config.h"
#include "splicer/result.h"

namespace splicer::daemon {

inline constexpr const char* kSystemConfigPath = "/etc/splicer/splicer.conf";

// The file `splicer run` reads: --config's, else the system one (which may be absent).
std::string run_config_path(const std::optional<std::string>& path);

Result<config::Config> load_run_config(const std::optional<std::string>& path,
                                       const privsep::FileSource& files = privsep::disk_source());

}  // namespace splicer::daemon
