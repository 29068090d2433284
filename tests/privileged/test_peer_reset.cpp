// A peer that resets mid-transfer (SO_LINGER 0 + close) on every data plane: the closed line
// names that peer (`end=client_reset` / `end=backend_reset`), whichever call of the daemon met
// the reset first (a read from the peer: ECONNRESET; a write into it: EPIPE or ECONNRESET).
// Both ways stream at once, so the reset meets the daemon reading from and writing into it.
// A second case: the client stops reading, so the daemon's write toward it blocks, and the
// backend resets meanwhile: the daemon must still see it at once (no call of it reads the
// backend then), not hold the pair until stall_timeout.

#include <poll.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "daemon_test_common.h"

namespace test = splicer::test;
using namespace std::chrono_literals;

namespace {

// Bytes each way before the reset: enough that the plane is moving a stream, not a hello.
constexpr std::size_t kBeforeReset = 256 * 1024;

// Sends what the socket takes without blocking; recv drains what has arrived.
void pump(int from, int to, const std::vector<char>& chunk, std::size_t& received) {
    (void)::send(from, chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    std::vector<char> sink(64 * 1024);
    const ssize_t got = ::recv(to, sink.data(), sink.size(), MSG_DONTWAIT);
    if (got > 0) {
        received += static_cast<std::size_t>(got);
    }
}

// A daemon on `plane` whose plain-XMPP rule leads to `backends`, listening on `listen_port`.
std::unique_ptr<test::DaemonProcess> start_xmpp_daemon(const std::string& plane,
                                                       std::uint16_t listen_port,
                                                       const test::Listener& backends) {
    test::SnikketPorts ports = test::unserved_snikket_ports();
    ports.listen = listen_port;
    ports.xmpp = backends.port;
    return test::start_daemon(plane, test::snikket_config(ports));
}

// A plain XMPP connection through the daemon to `backends`: {client, backend}.
std::pair<splicer::UniqueFd, splicer::UniqueFd> connect_xmpp_pair(std::uint16_t listen_port,
                                                                  const test::Listener& backends) {
    const std::string header = test::xmpp_stream_header();
    auto client = test::connect_and_send(listen_port, header, "");
    pollfd ready{.fd = backends.fd.get(), .events = POLLIN, .revents = 0};
    REQUIRE(::poll(&ready, 1, 5000) == 1);
    auto backend = test::accept_one(backends);
    REQUIRE(test::read_exactly(backend.get(), header.size()) == header);
    return {std::move(client), std::move(backend)};
}

// Sends from `fd` until the daemon has taken nothing for `quiet` (its write toward a client
// that does not read is blocked and every buffer on the way is full), for at most `limit`.
std::size_t send_until_blocked(int fd, std::chrono::milliseconds quiet,
                               std::chrono::milliseconds limit) {
    const std::vector<char> chunk(64 * 1024, 'y');
    std::size_t sent = 0;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    auto last_taken = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() < deadline &&
           std::chrono::steady_clock::now() - last_taken < quiet) {
        const ssize_t taken = ::send(fd, chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (taken > 0) {
            sent += static_cast<std::size_t>(taken);
            last_taken = std::chrono::steady_clock::now();
        } else {
            pollfd writable{.fd = fd, .events = POLLOUT, .revents = 0};
            (void)::poll(&writable, 1, 50);
        }
    }
    return sent;
}

}  // namespace

TEST_CASE("peer reset: a backend that resets while the client reads nothing is seen at once",
          "[plane][reset]") {
    test::require_root();
    const std::string plane = GENERATE("sockmap", "splice", "copy");
    CAPTURE(plane);
    const test::Listener backends = test::listen_loopback();
    const std::uint16_t listen_port = test::free_port();
    auto daemon = start_xmpp_daemon(plane, listen_port, backends);

    auto [client, backend] = connect_xmpp_pair(listen_port, backends);
    const std::uint16_t client_port = test::local_port(client.get());
    // The client reads nothing: the daemon's write toward it blocks once its buffers fill.
    const std::size_t sent = send_until_blocked(backend.get(), 500ms, 10s);
    INFO("the backend sent " << sent << " bytes before the daemon stopped taking");
    REQUIRE(sent >= kBeforeReset);

    test::close_with_reset(std::move(backend));
    const auto reset_at = std::chrono::steady_clock::now();
    const auto routed = test::routed_line(*daemon, client_port);
    REQUIRE(routed.has_value());
    const std::string conn(routed->get("conn"));
    // Within a watch interval (1 s) or so, loaded machine included; stall_timeout is 120 s.
    const auto closed = daemon->wait_for_log(
        "closed", [&](const test::LogLine& line) { return line.get("conn") == conn; }, 2s);
    const auto seen_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - reset_at)
                             .count();
    INFO("closed line " << seen_ms << " ms after the reset\n" << daemon->log_tail(20));
    REQUIRE(closed.has_value());
    CHECK(closed->get("end") == "backend_reset");
    // Bytes were lost: the client reads what reached it, then a reset, not a clean EOF.
    std::uint64_t drained = 0;
    const std::string client_end = test::wait_for_close(client.get(), 5s, &drained);
    INFO("the client read " << drained << " bytes, then " << client_end);
    CHECK(client_end == "reset");
    test::stop_daemon(*daemon);
}

TEST_CASE("peer reset: the closed line names the peer that reset mid-transfer, on every plane",
          "[plane][reset]") {
    test::require_root();
    const std::string plane = GENERATE("sockmap", "splice", "copy");
    CAPTURE(plane);
    const test::Listener backends = test::listen_loopback();
    const std::uint16_t listen_port = test::free_port();
    auto daemon = start_xmpp_daemon(plane, listen_port, backends);
    const std::vector<char> chunk(64 * 1024, 'x');

    for (const std::string resetting : {"client", "backend"}) {
        CAPTURE(resetting);
        auto [client, backend] = connect_xmpp_pair(listen_port, backends);
        const std::uint16_t client_port = test::local_port(client.get());
        std::size_t to_backend = 0;
        std::size_t to_client = 0;
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while ((to_backend < kBeforeReset || to_client < kBeforeReset) &&
               std::chrono::steady_clock::now() < deadline) {
            pump(client.get(), backend.get(), chunk, to_backend);
            pump(backend.get(), client.get(), chunk, to_client);
        }
        INFO("before the reset: " << to_backend << " bytes to the backend, " << to_client
                                  << " to the client");
        REQUIRE(to_backend >= kBeforeReset);
        REQUIRE(to_client >= kBeforeReset);
        // The other peer goes on reading, as a live one would, until the daemon ends it (one
        // that reads nothing: the case above).
        const bool client_resets = resetting == "client";
        test::close_with_reset(client_resets ? std::move(client) : std::move(backend));
        const splicer::UniqueFd& survivor = client_resets ? backend : client;
        std::uint64_t drained = 0;
        const std::string survivor_end = test::wait_for_close(survivor.get(), 10s, &drained);
        INFO("the " << (client_resets ? "backend" : "client") << " read " << drained
                    << " more bytes, then " << survivor_end);

        const auto routed = test::routed_line(*daemon, client_port);
        REQUIRE(routed.has_value());
        const std::string conn(routed->get("conn"));
        const auto closed = daemon->wait_for_log(
            "closed", [&](const test::LogLine& line) { return line.get("conn") == conn; }, 10s);
        INFO(daemon->log_tail(20));
        REQUIRE(closed.has_value());
        CHECK(closed->get("end") == resetting + "_reset");
        // As if the two were connected directly: the other peer reads a reset, no clean EOF.
        CHECK(survivor_end == "reset");
    }
    test::stop_daemon(*daemon);
}
