// The sockmap verdict trims the already-delivered head off a retransmitted segment that
// partly overlaps bytes it has seen (bpf_skb_adjust_room). That can fail: pulling a
// non-linear skb's bytes into its head allocates, under memory pressure too. Dropping the skb
// then would lose its new bytes, which TCP has acknowledged already, and the stream would go
// on with a hole. The verdict passes it instead and flags the pair, and the daemon ends the
// pair with a RST each way, copying none of it, so neither side reads a stream with a hole.
//
// Neither a partly overlapping retransmit nor an allocation failure can be had on demand, so
// a test build (CMake Debug: the debug and ASan flavours) lets the environment variable
// SPLICER_TEST_FAIL_VERDICT_TRIM set the verdict's `fail_trims` knob: every skb then takes
// trim_overlap()'s failure branch, and everything from there on (pass, flag, counter, the
// daemon's abort) is the production code, on real sockets.

#include <poll.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "daemon_test_common.h"
#include "support/scoped_environment.h"

namespace test = splicer::test;
using namespace std::chrono_literals;
using splicer::UniqueFd;

TEST_CASE("sockmap: an overlap trim that fails passes the skb and ends the pair with RSTs",
          "[daemon]") {
    test::require_root();
    const test::ScopedEnvironment fail_trims("SPLICER_TEST_FAIL_VERDICT_TRIM", "1");
    test::Listener backend_listener = test::listen_loopback();
    const std::uint16_t unused = test::free_port();
    const test::SnikketPorts ports{.listen = test::free_port(),
                                   .xmpp_tls = unused,
                                   .https = unused,
                                   .xmpp = backend_listener.port};
    auto daemon = test::start_daemon("sockmap", test::snikket_config(ports));

    // The first skb through the verdict (the peeked stream header, after the kick) cannot be
    // trimmed: the pair ends before a byte reaches the backend.
    const std::string header = test::xmpp_stream_header();
    UniqueFd client = test::connect_and_send(ports.listen, header, std::string(10'000, 'p'));
    pollfd incoming{backend_listener.fd.get(), POLLIN, 0};
    REQUIRE(::poll(&incoming, 1, 5000) == 1);
    UniqueFd backend = test::accept_one(backend_listener);

    std::uint64_t backend_received = 0;
    const std::string backend_end = test::wait_for_close(backend.get(), 3s, &backend_received);
    std::uint64_t client_received = 0;
    const std::string client_end = test::wait_for_close(client.get(), 3s, &client_received);
    INFO("daemon log:\n" << daemon->log_tail(20));
    CHECK(backend_end == "reset");
    CHECK(backend_received == 0);  // nothing of the skb that could not be trimmed, or after it
    CHECK(client_end == "reset");
    const auto closed = daemon->wait_for_log("closed", {}, 5s);
    REQUIRE(closed.has_value());
    CHECK(closed->get("end") == "verdict_edit_failed");

    CHECK(test::wait_for_counter(*daemon, "edit_failed_aborts", 1) == 1);
    test::stop_daemon(*daemon);
}
