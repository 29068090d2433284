#pragma once
// `splicer selftest`: the sockmap self-test on demand (selftest/sockmap_selftest.h).

#include <ostream>

namespace splicer::cli {

// Loads the verdict with the daemon's settings, runs every step and prints one line per step:
// name, ok or FAILED, its time, and why it failed. Returns the exit code: 0 when every step
// passed, 1 otherwise (the program not loading included).
int selftest_command(std::ostream& out);

}  // namespace splicer::cli
