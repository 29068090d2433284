#pragma once
// `splicer stats`: the running daemon's counters, read from the maps it pinned.

#include <ostream>
#include <string>

namespace splicer::cli {

// Returns the process exit code: 0 printed, 1 nothing to read (no daemon on that pin dir).
int stats_command(const std::string& pin_dir, std::ostream& out, std::ostream& err);

}  // namespace splicer::cli
