#pragma once
// Debian's HAProxy (2.6 on Debian 12) run by a test, in front of or behind splicer: the
// config text the test gives it, in the foreground (-db), its output to a log file in a temp
// dir of its own; stopped by pid (SIGTERM, then SIGKILL) and the dir removed when it goes.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "support/listening_child.h"
#include "support/process.h"

namespace splicer::test {

class HaproxyProcess {
public:
    // Starts HAProxy with `config_text` and returns once every one of `ports` accepts on
    // 127.0.0.1; throws std::runtime_error with its log when they do not within 10 s (or it
    // exits first). In another network namespace: `command_prefix` before its argv (nsenter)
    // and `listening` checking the ports there (listening_in_netns).
    HaproxyProcess(const std::string& config_text, const std::vector<std::uint16_t>& ports,
                   std::vector<std::string> command_prefix = {},
                   std::function<bool(std::uint16_t)> listening = accepts_on_loopback);
    ~HaproxyProcess();
    HaproxyProcess(const HaproxyProcess&) = delete;
    HaproxyProcess& operator=(const HaproxyProcess&) = delete;

    // What HAProxy wrote so far (its alerts and warnings), for failure messages.
    [[nodiscard]] std::string log() const;

private:
    TempDir dir_;
    ChildProcess process_;
};

}  // namespace splicer::test
