// The loop never blocks on its log: lines go into a bounded buffer that a writer thread of
// their own empties into stderr. A journal or pipe that stops reading costs log lines
// (counted: `log_dropped` in `splicer stats`, and an `event=log_dropped` line once writing
// resumes), never the connections.

#include <catch2/catch.hpp>
#include <string>

#include "daemon_test_common.h"

namespace test = splicer::test;
using namespace std::chrono_literals;
using splicer::UniqueFd;

namespace {

// One connection through the HTTPS rule, start to end: true when it completed within
// `within`; `took` is how long it did take.
bool serve_one(const test::SnikketPorts& ports, const test::TcpBackend& backend,
               const std::string& hello, std::chrono::milliseconds within,
               std::chrono::milliseconds& took, std::uint16_t* client_port = nullptr) {
    const auto started = test::Clock::now();
    UniqueFd client = test::connect_to(ports.listen);
    if (client_port != nullptr) {
        *client_port = test::local_port(client.get());
    }
    test::TransferOptions options;
    options.send = test::Outgoing{hello, 4096, 7};
    options.expect = backend.script().reply.generated;
    options.timeout = within;
    const test::TransferResult result = test::transfer_both_ways(client.get(), options);
    took = std::chrono::duration_cast<std::chrono::milliseconds>(test::Clock::now() - started);
    return result.complete(options);
}

}  // namespace

TEST_CASE("a stderr nobody reads costs log lines (counted) and never the connections",
          "[daemon][log][serial]") {
    test::require_root();
    test::TcpBackend https(test::BackendScript::exchange(4096));
    test::TcpBackend unused(test::BackendScript::record());
    const test::SnikketPorts ports{.listen = test::free_port(),
                                   .xmpp_tls = unused.port(),
                                   .https = https.port(),
                                   .xmpp = unused.port()};
    test::DaemonOptions options;
    options.binary = SPLICER_BINARY;
    // A 16 KiB log buffer in the daemon behind a one-page pipe: ~100 lines fill both.
    options.config_text = "log_buffer_size: \"16K\";\n" + test::snikket_config(ports);
    options.splice_mode = "sockmap";
    options.stderr_pipe_bytes = 4096;
    test::DaemonProcess daemon(options);
    INFO(daemon.log_tail(20));
    REQUIRE(daemon.wait_ready(15s));
    const std::string hello = test::make_client_hello({.server_name = "chat.example.com"});

    // The reader stops: 200 connections (two lines each, ~80 KB of log) are still served,
    // each promptly.
    daemon.pause_reading(true);
    constexpr int kConnections = 200;
    int served = 0;
    std::chrono::milliseconds slowest{0};
    for (int i = 0; i < kConnections; ++i) {
        std::chrono::milliseconds took{0};
        if (!serve_one(ports, https, hello, 3s, took)) {
            break;  // a daemon blocked on its stderr serves nothing more
        }
        ++served;
        slowest = std::max(slowest, took);
    }
    CHECK(served == kConnections);
    CHECK(slowest < 1500ms);
    WARN("stderr not read: " << served << " connections served, slowest " << slowest.count()
                             << " ms");
    // The whole interval, not wait_for_counter: the line below must not report more drops than
    // this count, so it must hold every drop so far, not the first one published.
    std::this_thread::sleep_for(1100ms);  // counters are published once a second
    const std::uint64_t dropped = test::daemon_counter(daemon, "log_dropped");
    CHECK(dropped > 0);

    // The reader resumes: the daemon reports what it dropped, and logs on.
    daemon.pause_reading(false);
    const auto report = daemon.wait_for_log("log_dropped", {}, 5s);
    REQUIRE(report.has_value());
    CHECK(std::stoull(std::string(report->get("dropped"))) > 0);
    CHECK(std::stoull(std::string(report->get("dropped"))) <= dropped);
    std::chrono::milliseconds took{0};
    std::uint16_t client_port = 0;
    REQUIRE(serve_one(ports, https, hello, 5s, took, &client_port));
    const auto routed = test::routed_line(daemon, client_port);
    REQUIRE(routed.has_value());
    const auto closed = daemon.wait_for_log(
        "closed",
        [&](const test::LogLine& line) { return line.get("conn") == routed->get("conn"); }, 5s);
    CHECK(closed.has_value());

    // Stopping while nobody reads: the daemon flushes what it can for a bounded time, then
    // exits anyway.
    daemon.pause_reading(true);
    for (int i = 0; i < 50; ++i) {
        REQUIRE(serve_one(ports, https, hello, 3s, took));
    }
    const auto stopping = test::Clock::now();
    const std::optional<int> status = daemon.stop(10s);
    const auto stop_took =
        std::chrono::duration_cast<std::chrono::milliseconds>(test::Clock::now() - stopping);
    daemon.pause_reading(false);
    REQUIRE(status.has_value());
    CHECK(*status == 0);
    CHECK(stop_took < 5s);
    WARN("stopped with stderr unread in " << stop_took.count() << " ms");
}
