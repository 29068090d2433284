// support/listening_child.h, the wait every test server (nginx, Prosody, HAProxy, the echo
// server) starts with: real child processes on loopback ports, each case bounded by its
// timeout (at most 3 s) and the children killed when the case ends.

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "support/daemon.h"  // free_port
#include "support/listening_child.h"
#include "support/process.h"
#include "support/sockets.h"

namespace test = splicer::test;
using namespace std::chrono_literals;

namespace {

// A python3 child that binds 127.0.0.1:port for each of `ports`, listens on them after
// `delay_ms`, then sleeps: the wait must poll past the delay, not take the first refused
// connect for an answer.
test::ChildProcess python_listener(const std::vector<std::uint16_t>& ports, int delay_ms) {
    constexpr const char* kScript =
        "import socket, sys, time\n"
        "held = []\n"
        "for port in sys.argv[2:]:\n"
        "    s = socket.socket()\n"
        "    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "    s.bind(('127.0.0.1', int(port)))\n"
        "    held.append(s)\n"
        "time.sleep(int(sys.argv[1]) / 1000)\n"
        "for s in held:\n"
        "    s.listen()\n"
        "time.sleep(30)\n";
    // Debian's python3 (scripts/install-deps brings it with python3-slixmpp), not a PATH shim
    // such as pyenv's, which takes over a second to start on a busy machine.
    std::vector<std::string> argv = {"/usr/bin/python3", "-c", kScript, std::to_string(delay_ms)};
    for (const std::uint16_t port : ports) {
        argv.push_back(std::to_string(port));
    }
    return test::ChildProcess(test::SpawnOptions{.argv = argv});
}

std::chrono::milliseconds since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 start);
}

}  // namespace

TEST_CASE("wait_until_listening returns once every port of the child accepts", "[support]") {
    const std::uint16_t first = test::free_port();
    const std::uint16_t second = test::free_port();
    test::ChildProcess child = python_listener({first, second}, 300);
    const auto start = std::chrono::steady_clock::now();
    // The default check: a connect to 127.0.0.1.
    test::wait_until_listening(child,
                               {.name = "listener", .ports = {first, second}, .timeout = 3s});
    const auto waited = since(start);
    CAPTURE(waited.count());
    CHECK(waited >= 250ms);  // it waited for the listen, not the bind
    CHECK_NOTHROW(test::connect_to(first, false, 1s));
    CHECK_NOTHROW(test::connect_to(second, false, 1s));
    CHECK(child.running());
}

TEST_CASE("wait_until_listening names a child that ends at once, with its log", "[support]") {
    const std::uint16_t port = test::free_port();
    test::TempDir dir("splicer-listening");
    const auto log_path = dir.path() / "log";
    test::ChildProcess child(test::SpawnOptions{
        .argv = {"sh", "-c", "echo 'no such directive' > '" + log_path.string() + "'; exit 3"}});
    const auto start = std::chrono::steady_clock::now();
    try {
        test::wait_until_listening(child, {.name = "brokenserver",
                                           .ports = {port},
                                           .timeout = 3s,
                                           .listening = test::accepts_on_loopback,
                                           .log = [&] { return test::read_file(log_path); }});
        FAIL("no error for a child that exited");
    } catch (const std::runtime_error& error) {
        const std::string message = error.what();
        CAPTURE(message);
        CHECK(message.find("brokenserver ended before listening on " + std::to_string(port)) !=
              std::string::npos);
        CHECK(message.find("exited with status 3") != std::string::npos);
        CHECK(message.find("no such directive") != std::string::npos);
    }
    CHECK(since(start) < 2s);  // told at its end, not at the timeout
}

TEST_CASE("wait_until_listening gives up at its timeout on a child that never listens",
          "[support]") {
    const std::uint16_t port = test::free_port();
    test::ChildProcess child(test::SpawnOptions{.argv = {"sleep", "30"}});
    const auto start = std::chrono::steady_clock::now();
    try {
        test::wait_until_listening(child, {.name = "sleeper",
                                           .ports = {port},
                                           .timeout = 400ms,
                                           .listening = test::accepts_on_loopback,
                                           .log = {}});
        FAIL("no error for a child that never listened");
    } catch (const std::runtime_error& error) {
        const std::string message = error.what();
        CAPTURE(message);
        CHECK(message.find("sleeper did not listen on " + std::to_string(port) +
                           " within 400 ms (running)") != std::string::npos);
    }
    const auto waited = since(start);
    CAPTURE(waited.count());
    CHECK(waited >= 400ms);
    CHECK(waited < 2s);
    CHECK(child.running());  // left to its owner
}
