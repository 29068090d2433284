#include "support/daemon_reload.h"

#include <signal.h>

#include <stdexcept>
#include <string>

namespace splicer::test {

std::optional<LogLine> reload_daemon(const DaemonProcess& daemon,
                                     std::chrono::milliseconds timeout) {
    // Counted before the signal: a line the reload logs cannot come before `from`.
    const std::size_t from = daemon.log_count();
    if (::kill(daemon.pid(), SIGHUP) != 0) {
        throw std::runtime_error("SIGHUP to the daemon (pid " + std::to_string(daemon.pid()) +
                                 ") failed");
    }
    return daemon.wait_for_log(
        "",
        [](const LogLine& line) {
            return line.event() == "reloaded" || line.event() == "reload_failed";
        },
        timeout, from);
}

}  // namespace splicer::test
