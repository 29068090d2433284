#include "cli/upgrade_command.h"

#include <signal.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

namespace splicer::cli {
namespace {

// argv[0]'s name and argv[1] from /proc/PID/cmdline: a SIGUSR2 to anything but a running
// `splicer run` would kill it (the default action), so a wrong pid is refused first.
bool is_splicer_run(pid_t pid) {
    std::ifstream file("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    std::string program;
    std::string command;
    if (!std::getline(file, program, '\0') || !std::getline(file, command, '\0')) {
        return false;
    }
    const std::size_t slash = program.rfind('/');
    const std::string name = slash == std::string::npos ? program : program.substr(slash + 1);
    return name.rfind("splicer", 0) == 0 && command == "run";
}

}  // namespace

int upgrade_command(pid_t pid, std::ostream& out, std::ostream& err) {
    if (!is_splicer_run(pid)) {
        err << "splicer upgrade: process " << pid << " is not a running `splicer run`\n";
        return 1;
    }
    if (::kill(pid, SIGUSR2) != 0) {
        err << "splicer upgrade: signalling " << pid << ": " << std::strerror(errno) << '\n';
        return 1;
    }
    out << "asked splicer " << pid
        << " to upgrade (its log says upgraded new_pid=N or upgrade_failed reason=...)\n";
    return 0;
}

}  // namespace splicer::cli
