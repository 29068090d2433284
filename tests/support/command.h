#pragma once
// Runs a command line through /bin/sh and captures what it printed and how it exited.

#include <string>

namespace splicer::test {

struct CommandResult {
    int exit_code = -1;
    std::string output;  // stdout and stderr, interleaved as written
};

CommandResult run_command(const std::string& command_line);

}  // namespace splicer::test
