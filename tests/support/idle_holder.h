#pragma once
// tools/bench/idle_holder in its own process: opens COUNT connections to a port, proves each
// with an echo, and holds them idle; on request proves every one again with a line of its
// own. A process of its own because its fds count against its own RLIMIT_NOFILE: the hold
// test's tens of thousands of client sockets do not fit in the test process's table.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "splicer/unique_fd.h"
#include "support/process.h"

namespace splicer::test {

struct HolderEcho {
    std::size_t echoed = 0;
    std::size_t failed = 0;
};

class IdleHolder {
public:
    // Starts `binary 127.0.0.1 PORT COUNT SECONDS` (SECONDS bounds the opening).
    IdleHolder(const std::string& binary, std::uint16_t port, std::size_t count,
               std::chrono::seconds open_within);
    IdleHolder(const IdleHolder&) = delete;
    IdleHolder& operator=(const IdleHolder&) = delete;

    // Connections opened and proved, once it has said so; nullopt after `timeout` or when it
    // died first.
    std::optional<std::size_t> wait_established(std::chrono::milliseconds timeout);
    // Asks for a round trip on every held connection; nullopt after `timeout` or when it died.
    std::optional<HolderEcho> echo_all(std::chrono::milliseconds timeout);
    // SIGTERM (it exits, the kernel closes its sockets) and reap; the exit status.
    int stop();

    [[nodiscard]] pid_t pid() const { return process_.pid(); }

private:
    // The next line it prints that starts with `prefix` (without it); nullopt on timeout/EOF.
    std::optional<std::string> next_line(const std::string& prefix,
                                         std::chrono::milliseconds timeout);

    UniqueFd output_;
    std::string pending_;
    ChildProcess process_;
};

}  // namespace splicer::test
