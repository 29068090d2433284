#pragma once
// `splicer check`: load a config, print diagnostics, then the effective listeners and rules.

#include <ostream>
#include <string>

namespace splicer::cli {

// Returns the process exit code: 0 valid, 1 errors.
int check_command(const std::string& config_path, std::ostream& out, std::ostream& err);

}  // namespace splicer::cli
