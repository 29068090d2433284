#include "support/command.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <stdexcept>

namespace splicer::test {

CommandResult run_command(const std::string& command_line) {
    const std::string with_stderr = command_line + " 2>&1";
    FILE* pipe = ::popen(with_stderr.c_str(), "r");
    if (pipe == nullptr) {
        throw std::runtime_error("popen failed: " + command_line);
    }
    CommandResult result;
    std::array<char, 4096> buffer{};
    std::size_t n = 0;
    while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
        result.output.append(buffer.data(), n);
    }
    const int status = ::pclose(pipe);
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return result;
}

}  // namespace splicer::test
