#include "support/netns_thread.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "splicer/unique_fd.h"
#include "support/command.h"

namespace splicer::test {

void run_in_netns(const std::string& name, const std::function<void()>& make) {
    const auto open_ns = [](const std::string& path) {
        UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) {
            throw std::runtime_error("open " + path + ": " + std::strerror(errno));
        }
        return fd;
    };
    const UniqueFd home = open_ns("/proc/thread-self/ns/net");
    const UniqueFd there = open_ns("/run/netns/" + name);
    if (::setns(there.get(), CLONE_NEWNET) != 0) {
        throw std::runtime_error("setns " + name + ": " + std::strerror(errno));
    }
    // Back home whatever `make` does: the thread runs the rest of the test, whose sockets
    // must not land in this namespace (a broken invariant if that fails: abort).
    struct GoHome {
        int fd;
        ~GoHome() {
            if (::setns(fd, CLONE_NEWNET) != 0) {
                std::fprintf(stderr, "run_in_netns: setns back: %s\n", std::strerror(errno));
                std::abort();
            }
        }
    } const go_home{home.get()};
    make();
}

bool listening_in_netns(const std::string& name, std::uint16_t port) {
    const CommandResult listed =
        run_command("ip netns exec " + name + " ss -Htln 'sport = :" + std::to_string(port) + "'");
    return listed.exit_code == 0 && listed.output.find("LISTEN") != std::string::npos;
}

}  // namespace splicer::test
