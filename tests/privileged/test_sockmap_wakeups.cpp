// What a spliced connection's request/response flights cost the daemon in wake-ups. Every skb
// the verdict redirects wakes its source's waiters too (the kernel's
// sk_psock_verdict_data_ready calls the socket's saved sk_data_ready after the redirect), and
// io_uring's poll takes the wake-up's key (EPOLLIN) for its answer: the sockmap plane's
// source poll fired for each redirected flight, and each time the plane peeked (a recv with
// MSG_PEEK answering EAGAIN), armed a recheck timer and polled again. Main's daemon made ~2
// such peeks per flight here (one per direction). The plane now watches each source with a
// 1-byte MSG_PEEK recv in the ring, which the kernel retries on each wake-up and completes
// only once a byte is readable, at EOF or on an error (docs/sockmap-wakeups.md): no peek
// syscall, and the source watch completes twice per connection, once per EOF.

#include <poll.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "daemon_test_common.h"
#include "support/client_hello.h"
#include "support/command.h"
#include "support/proc_stats.h"
#include "support/sockets.h"
#include "support/syscall_count.h"

namespace test = splicer::test;
using namespace std::chrono_literals;
using splicer::UniqueFd;

namespace {

// One connection spliced by a sockmap daemon to this test's own backend socket, its
// ClientHello read there: each flight's bytes are read by the test before the next is sent.
// Started in two steps, so that a test can start counting the daemon's system calls between
// its start-up and the connection.
struct SplicedPair {
    void start() { daemon = test::start_daemon("sockmap", test::snikket_config(ports)); }

    void connect() {
        const std::string hello = test::make_client_hello({.server_name = "chat.example.com"});
        client = test::connect_and_send(ports.listen, hello, "");
        pollfd waiting{.fd = https.fd.get(), .events = POLLIN, .revents = 0};
        REQUIRE(::poll(&waiting, 1, 5000) == 1);
        backend = test::accept_one(https);
        REQUIRE(test::read_exactly(backend.get(), hello.size()) == hello);
    }

    // The client half-closes, then the backend: both EOFs arrive, and the daemon logs the
    // pair's end as `done`; then the daemon is stopped.
    void end_in_order() {
        ::shutdown(client.get(), SHUT_WR);
        CHECK(test::wait_for_close(backend.get(), 5s) == "eof");
        backend.reset();
        CHECK(test::wait_for_close(client.get(), 5s) == "eof");
        const auto closed = daemon->wait_for_log("closed");
        REQUIRE(closed);
        CHECK(closed->get("end") == "done");
        test::stop_daemon(*daemon);
    }

    test::Listener https = test::listen_loopback();
    test::TcpBackend unused{test::BackendScript::record()};
    test::SnikketPorts ports{.listen = test::free_port(),
                             .xmpp_tls = unused.port(),
                             .https = https.port,
                             .xmpp = unused.port()};
    std::unique_ptr<test::DaemonProcess> daemon;
    UniqueFd client;
    UniqueFd backend;
};

// A counter's value in `splicer stats` output (indented "name value" rows).
std::uint64_t stats_row(const std::string& output, const std::string& name) {
    const auto at = output.find(" " + name + " ");
    REQUIRE(at != std::string::npos);
    return std::stoull(output.substr(at + name.size() + 2));
}

}  // namespace

TEST_CASE("sockmap: request/response flights through a spliced pair cost the daemon no peek and no empty wake-up",
          "[daemon]") {
    test::require_root();
    constexpr int kFlights = 20;
    // The backend is this test's own socket: each flight's request is read there before its
    // response is written, as a TLS server answers a client's records.
    SplicedPair pair;
    pair.start();
    // Counted from here: the start-up (the self-test's sockets) is not the connection's.
    const test::SyscallCount recv_calls(pair.daemon->pid(), "recvfrom");
    pair.connect();
    const auto& daemon = pair.daemon;
    UniqueFd& client = pair.client;
    UniqueFd& backend = pair.backend;

    const std::string request = test::ByteGenerator(3).take(400);
    const std::string response = test::ByteGenerator(4).take(3000);
    for (int i = 0; i < kFlights; ++i) {
        CAPTURE(i);
        test::write_all(client.get(), request);
        REQUIRE(test::read_exactly(backend.get(), request.size()) == request);
        test::write_all(backend.get(), response);
        REQUIRE(test::read_exactly(client.get(), response.size()) == response);
        // Pacing, not a bound: past the plane's 2 ms recheck, so that on main's plane each
        // flight's wake-ups came on their own instead of folding into the previous recheck.
        std::this_thread::sleep_for(5ms);
    }
    ::shutdown(client.get(), SHUT_WR);
    CHECK(test::wait_for_close(backend.get(), 5s) == "eof");
    backend.reset();
    CHECK(test::wait_for_close(client.get(), 5s) == "eof");

    const auto deadline = test::Clock::now() + 10s;
    auto closed = [&] { return daemon->logs("closed"); };
    while (closed().empty() && test::Clock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
    }
    const std::uint64_t recvs = recv_calls.total();
    INFO(daemon->log_tail());
    REQUIRE(closed().size() == 1);
    CHECK(closed()[0].get("end") == "done");
    CHECK(daemon->logs("sockmap_fallback").empty());

    std::this_thread::sleep_for(1500ms);  // counters are published once a second
    const auto stats =
        test::run_command(std::string(SPLICER_BINARY) + " stats --pin-dir " + daemon->pin_dir());
    CAPTURE(stats.output);
    REQUIRE(stats.exit_code == 0);
    const std::uint64_t wakeups = stats_row(stats.output, "sockmap_source_wakeups");
    const std::uint64_t empty = stats_row(stats.output, "sockmap_empty_wakeups");
    WARN(kFlights << " flights: " << recvs << " recv calls, " << wakeups << " source wake-ups, "
                  << empty << " of them empty");
    // The probe's peeks at the ClientHello (1-2) are all that is left: main's daemon made
    // 2 per flight more, each a wake-up that found nothing (43-44 measured, 40 empty).
    CHECK(recvs <= 4);
    // One completion per source, at its EOF.
    CHECK(wakeups == 2);
    CHECK(empty == 0);
    test::stop_daemon(*daemon);
}

namespace {

std::uint64_t empty_wakeups(const test::DaemonProcess& daemon) {
    const auto stats =
        test::run_command(std::string(SPLICER_BINARY) + " stats --pin-dir " + daemon.pin_dir());
    REQUIRE(stats.exit_code == 0);
    return stats_row(stats.output, "sockmap_empty_wakeups");
}

}  // namespace

// After ~128 redirected flights in a row the kernel hands a source watch's recv to an io-wq
// worker, whose blocking recv sleeps until the source's next wake-up (docs/sockmap-wakeups.md).
// A source that falls silent right then would keep that kernel thread for as long as it stays
// silent; the plane bounds the sleep (SO_RCVTIMEO, 1 s) and the source goes to the poll.
// Here the client sends flights until the daemon has a worker, then nothing: the watch must
// answer within a few seconds with no segment arriving (without the bound it never does),
// and the pair must go on serving both ways and end in order.
TEST_CASE("sockmap: a source that falls silent while an io-wq worker holds its watch frees the worker within seconds and is served on",
          "[daemon]") {
    test::require_root();
    SplicedPair pair;
    pair.start();
    pair.connect();
    const auto& daemon = pair.daemon;
    UniqueFd& client = pair.client;
    UniqueFd& backend = pair.backend;
    REQUIRE(test::io_wq_workers(daemon->pid()) == 0);

    // Each flight is read by the backend before the next is sent: one wake-up of the
    // client's watch each. The pause lets the loop's retry run before the next flight.
    const std::string flight = test::ByteGenerator(5).take(200);
    int flights = 0;
    while (flights < 400 && test::io_wq_workers(daemon->pid()) == 0) {
        test::write_all(client.get(), flight);
        REQUIRE(test::read_exactly(backend.get(), flight.size()) == flight);
        ++flights;
        std::this_thread::sleep_for(5ms);
    }
    INFO(flights << " flights");
    REQUIRE(test::io_wq_workers(daemon->pid()) > 0);

    // Silence: the worker's recv answers after the bound, the watch reports it.
    const auto deadline = test::Clock::now() + 8s;
    std::uint64_t empty = empty_wakeups(*daemon);
    while (empty == 0 && test::Clock::now() < deadline) {
        std::this_thread::sleep_for(200ms);
        empty = empty_wakeups(*daemon);
    }
    CHECK(empty >= 1);

    // Served on, now through the poll: a flight each way, then both EOFs.
    const std::string request = test::ByteGenerator(6).take(3000);
    const std::string response = test::ByteGenerator(7).take(5000);
    test::write_all(client.get(), request);
    CHECK(test::read_exactly(backend.get(), request.size()) == request);
    test::write_all(backend.get(), response);
    CHECK(test::read_exactly(client.get(), response.size()) == response);
    pair.end_in_order();
}

// Once a busy connection's sources are watched by the poll (after ~128 flights each), every
// redirected flight wakes that poll with nothing to read (docs/sockmap-wakeups.md). The plane
// used to re-arm it 2 ms after each such wake-up: a CQE, a peek and a timer per direction
// every ~2 ms for as long as the flights went on (56,000 in a 4 s keep-alive benchmark of 16
// connections). Now the re-arms of a quiet direction back off to every 16 ms
// (recheck_interval). Flights as fast as the test can send them for 2 s: at most ~130 empty
// wake-ups per direction (2 s / 16 ms, and the first 2, 4 and 8 ms), against one per ~2 ms
// on the plane before; every flight byte-exact, and the pair ends in order.
TEST_CASE("sockmap: a busy keep-alive connection's polled sources wake the daemon at most every 16 ms with nothing to read",
          "[daemon]") {
    test::require_root();
    SplicedPair pair;
    pair.start();
    pair.connect();
    const std::string request = test::ByteGenerator(8).take(300);
    const std::string response = test::ByteGenerator(9).take(2000);
    const auto flight = [&] {
        test::write_all(pair.client.get(), request);
        REQUIRE(test::read_exactly(pair.backend.get(), request.size()) == request);
        test::write_all(pair.backend.get(), response);
        REQUIRE(test::read_exactly(pair.client.get(), response.size()) == response);
    };
    // Both sources' ring peeks retire after ~128 wake-ups each: paced flights, so each one
    // wakes its watch on its own (as in the test above), until both have gone to the poll
    // (an empty wake-up each), at most 1,000.
    int warm_up = 0;
    std::uint64_t empty_before = 0;
    while (warm_up < 1000) {
        flight();
        ++warm_up;
        std::this_thread::sleep_for(1ms);
        if (warm_up % 100 == 0) {
            std::this_thread::sleep_for(1100ms);  // counters are published once a second
            empty_before = empty_wakeups(*pair.daemon);
            if (empty_before >= 2) {
                break;
            }
        }
    }
    INFO(warm_up << " warm-up flights, " << empty_before << " empty wake-ups");
    REQUIRE(empty_before >= 2);

    constexpr auto kBusyFor = 2s;
    int flights = 0;
    const auto until = test::Clock::now() + kBusyFor;
    while (test::Clock::now() < until && flights < 200000) {
        flight();
        ++flights;
    }
    std::this_thread::sleep_for(1100ms);
    const std::uint64_t empty = empty_wakeups(*pair.daemon) - empty_before;
    WARN(flights << " flights in 2 s: " << empty << " empty wake-ups");
    // Enough flights that the plane before (one empty wake-up per direction every ~2 ms, as
    // long as a flight comes in each) would have made ~2,000 here.
    REQUIRE(flights >= 4000);
    CHECK(empty <= 2 * (2000 / 16 + 20));
    pair.end_in_order();
}
