#pragma once
// A server a test runs as a child process (nginx, Prosody, HAProxy, the bench echo server) is
// ready once every port it serves accepts. One loop for all of them: poll the ports until they
// accept, and when the child dies first or the time runs out, throw a message that names the
// server, the port still closed, how the child ended and what it wrote (its log).

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "support/process.h"

namespace splicer::test {

// True when a TCP connect to 127.0.0.1:port completes within 200 ms (closed at once).
bool accepts_on_loopback(std::uint16_t port);

struct ListenWait {
    std::string name;  // how the error names the server: "nginx"
    std::vector<std::uint16_t> ports;
    std::chrono::milliseconds timeout{10'000};
    // How to tell that a port listens. A server in another network namespace passes a check
    // made there (EdgeNetns::listening).
    std::function<bool(std::uint16_t)> listening = accepts_on_loopback;
    // What the server wrote so far (its log file), appended to the error; none when empty.
    std::function<std::string()> log;
};

// Returns once every port of `wait` listens. Throws std::runtime_error when `child` ends first
// ("nginx ended before listening on 8443 (exited with status 1): LOG") or when a port is still
// closed at the timeout ("nginx did not listen on 8443 within 10000 ms (running): LOG"). The
// child is left as it is: its owner stops it.
void wait_until_listening(ChildProcess& child, const ListenWait& wait);

}  // namespace splicer::test
