#pragma once
// SIGHUP to a test's daemon and the one log line that answers it.

#include <chrono>
#include <optional>

#include "support/daemon.h"

namespace splicer::test {

// Sends SIGHUP and waits up to `timeout` for the first `reloaded` or `reload_failed` line
// logged after it; nullopt if neither came. Waiting for both means a reload that went the
// other way than the test expects is reported at once with its error, not as a timeout.
std::optional<LogLine> reload_daemon(
    const DaemonProcess& daemon, std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace splicer::test
