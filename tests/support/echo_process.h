#pragma once
// An echo backend in its own process (tools/bench/echo_server: one epoll loop, any number of
// connections, bounded buffering), so a test can kill it for real (SIGKILL: the kernel closes
// its sockets as it would for a crashed server) and start it again on the same port.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "support/process.h"

namespace splicer::test {

class EchoProcess {
public:
    // Starts `binary 127.0.0.1 PORT` on a free port and waits until it accepts.
    explicit EchoProcess(std::string binary);
    EchoProcess(const EchoProcess&) = delete;
    EchoProcess& operator=(const EchoProcess&) = delete;

    [[nodiscard]] std::uint16_t port() const { return port_; }
    [[nodiscard]] pid_t pid() const { return process_.pid(); }
    [[nodiscard]] bool running() { return process_.running(); }

    // SIGKILL and reap.
    void kill();
    // Starts it again on the same port (the listener uses SO_REUSEADDR) and waits until it
    // accepts; throws if it does not within a few seconds.
    void restart();

private:
    void start();

    std::string binary_;
    std::uint16_t port_ = 0;
    ChildProcess process_;
};

}  // namespace splicer::test
