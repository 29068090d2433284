#pragma once
// `splicer stats`: the running daemon's counters, read from the maps it pinned.

#include <ostream>
#include <string>

namespace splicer::cli {

// Returns the process exit code: 0 printed, 1 nothing to read (no daemon on that pin dir).
// `json`: the metrics endpoint's families as JSON (metrics/exposition.h), plus the sockmap
// plane's kernel counters under "kernel" (null on other planes).
int stats_command(const std::string& pin_dir, bool json, std::ostream& out, std::ostream& err);

}  // namespace splicer::cli
