#pragma once
// Shared by the daemon integration tests: the Snikket sslh snippet on test ports, starting a
// daemon for one data plane and stopping it with the checks every test ends with.

#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/backends.h"
#include "support/command.h"
#include "support/daemon.h"
#include "support/privileged.h"
#include "support/proc_stats.h"
#include "support/raw_client.h"
#include "support/sockets.h"
#include "support/streams.h"

namespace splicer::test {

using namespace std::chrono_literals;

// The three names of the Snikket snippet's HTTPS rule.
inline const std::vector<std::string> kSnikketNames = {
    "chat.example.com", "groups.chat.example.com", "share.chat.example.com"};

struct SnikketPorts {
    std::uint16_t listen = 0;
    std::uint16_t xmpp_tls = 0;  // P1: ALPN xmpp-client  (5223 in the snippet)
    std::uint16_t https = 0;     // P2: the three SNI names (5443)
    std::uint16_t xmpp = 0;      // P3: plain XMPP         (5222)
};

// Free ports for every role, no backend behind them: for tests of start-up alone.
inline SnikketPorts unserved_snikket_ports() {
    return {.listen = free_port(), .xmpp_tls = free_port(), .https = free_port(),
            .xmpp = free_port()};
}

struct SnikketConfigOptions {
    int probe_timeout_seconds = 1;
    bool on_timeout_xmpp = true;  // on-timeout: "xmpp" (the plain XMPP rule)
    int connect_timeout_seconds = 2;
};

// The sslh snippet from the Snikket reverse-proxy page, as published (trailing commas, the
// missing ';' after sni_hostnames), with test ports, a second listener on ::1, and the
// timeouts the tests need.
inline std::string snikket_config(const SnikketPorts& ports,
                                  const SnikketConfigOptions& options = {}) {
    std::ostringstream text;
    text << "listen:\n(\n"
         << "    { host: \"127.0.0.1\"; port: \"" << ports.listen << "\"; },\n"
         << "    { host: \"::1\"; port: \"" << ports.listen << "\"; },\n"
         << ");\n\nprotocols:\n(\n"
         << "     ## Snikket rules\n"
         << "     { name: \"tls\";     host: \"127.0.0.1\"; port: \"" << ports.xmpp_tls
         << "\"; alpn_protocols: [ \"xmpp-client\" ]; },\n"
         << "     { name: \"tls\";     host: \"127.0.0.1\"; port: \"" << ports.https
         << "\"; sni_hostnames:  [ \"chat.example.com\", \"groups.chat.example.com\", "
            "\"share.chat.example.com\" ] },\n"
         << "     { name: \"xmpp\";    host: \"127.0.0.1\"; port: \"" << ports.xmpp << "\"; },\n"
         << ");\n\n"
         << "timeout: " << options.probe_timeout_seconds << ";\n";
    if (options.on_timeout_xmpp) {
        text << "on-timeout: \"xmpp\";\n";
    }
    text << "connect_timeout: " << options.connect_timeout_seconds << ";\n";
    return text.str();
}

// Starts splicer for `plane` and waits for event=ready (REQUIREs it, with the log on failure).
// `workers` as DaemonOptions::workers: one event loop unless the config sets more, nullopt
// for the daemon's own default.
inline std::unique_ptr<DaemonProcess> start_daemon(const std::string& plane,
                                                   const std::string& config,
                                                   std::optional<std::uint32_t> workers = 1) {
    DaemonOptions options;
    options.binary = SPLICER_BINARY;
    options.config_text = config;
    options.splice_mode = plane;
    options.workers = workers;
    auto daemon = std::make_unique<DaemonProcess>(options);
    const bool ready = daemon->wait_ready(15s);
    INFO("daemon did not log event=ready; its log:\n" << daemon->log_tail());
    REQUIRE(ready);
    // The ready line names the plane in use: the one asked for, not a fallback.
    const auto ready_line = daemon->wait_for_log("ready", {}, 1s);
    REQUIRE(ready_line.has_value());
    if (ready_line->has("plane")) {
        CHECK(ready_line->get("plane") == plane);
    }
    return daemon;
}

// SIGTERM (or SIGINT): exit 0 within 10 s, and nothing left pinned. After the privilege drop
// the daemon can unlink its pins but not remove the pin dir itself (its parent belongs to
// root): the dir may stay, empty.
inline void stop_daemon(DaemonProcess& daemon, int signal_number = SIGTERM) {
    const std::optional<int> status = daemon.stop(10s, signal_number);
    INFO("daemon log:\n" << daemon.log_tail());
    REQUIRE(status.has_value());
    CHECK(*status == 0);
    INFO("pin dir " << daemon.pin_dir());
    CHECK(pinned_objects(daemon.pin_dir()).empty());
    if (std::filesystem::exists(daemon.pin_dir())) {
        CHECK(std::filesystem::is_empty(daemon.pin_dir()));
    }
}

// Waits for the daemon's routed line for the connection from local port `client_port`.
inline std::optional<LogLine> routed_line(const DaemonProcess& daemon, std::uint16_t client_port,
                                          std::chrono::milliseconds timeout = 5s) {
    return daemon.wait_for_log(
        "routed", [&](const LogLine& line) { return log_line_is_client(line, client_port); },
        timeout);
}

// The closed lines' `worker` field from line `from` on: how many connections each worker
// served (test_workers, test_upgrade).
inline std::map<std::string, std::size_t> closed_per_worker(const DaemonProcess& daemon,
                                                            std::size_t from = 0) {
    std::map<std::string, std::size_t> counts;
    const auto lines = daemon.logs("closed");
    for (std::size_t i = from; i < lines.size(); ++i) {
        ++counts[std::string(lines[i].get("worker"))];
    }
    return counts;
}

// One counter of `splicer stats` for the running daemon (REQUIREs that it is listed). The
// daemon publishes its counters once a second: wait that long after the events to count.
inline std::uint64_t daemon_counter(const DaemonProcess& daemon, const std::string& counter) {
    const auto result =
        run_command(std::string(SPLICER_BINARY) + " stats --pin-dir " + daemon.pin_dir());
    CAPTURE(result.output);
    REQUIRE(result.exit_code == 0);
    const std::size_t at = result.output.find("  " + counter + " ");
    REQUIRE(at != std::string::npos);
    return std::stoull(result.output.substr(at + counter.size() + 3));
}

// daemon_counter polled every 100 ms until it reaches `expected`, or its value once `timeout`
// passed: the count is there as soon as the daemon published it (on average half a second),
// where a sleep had to last the whole interval and more. The caller still checks the value
// (CHECK(... == expected) catches a count past it). A count that must stay 0, or one read
// as the total of events still under way, cannot be waited for this way: sleep the interval
// out, then read daemon_counter.
inline std::uint64_t wait_for_counter(const DaemonProcess& daemon, const std::string& counter,
                                      std::uint64_t expected,
                                      std::chrono::milliseconds timeout = 3s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const std::uint64_t value = daemon_counter(daemon, counter);
        if (value >= expected || std::chrono::steady_clock::now() >= deadline) {
            return value;
        }
        std::this_thread::sleep_for(100ms);
    }
}

// How a transfer ended, for a failure message: counts, flags, and where the stream first
// differed from what was expected (TransferOptions::verify).
inline std::string describe_stream(std::uint64_t sent, std::uint64_t received, bool eof, bool reset,
                                   bool timed_out, const std::string& error,
                                   std::chrono::milliseconds elapsed, std::uint64_t mismatch,
                                   std::uint64_t found_at) {
    constexpr std::uint64_t kNone = std::numeric_limits<std::uint64_t>::max();
    std::ostringstream text;
    text << "sent " << sent << " received " << received << (eof ? " eof" : "")
         << (reset ? " reset" : "") << (timed_out ? " timed_out" : "")
         << (error.empty() ? "" : " error=" + error) << " after " << elapsed.count() << " ms";
    if (mismatch != kNone) {
        text << "; first byte differing at " << mismatch;
        if (found_at == kNone) {
            text << " (bytes there not found nearby)";
        } else if (found_at > mismatch) {
            text << " (a hole: " << found_at - mismatch << " bytes missing there)";
        } else {
            text << " (a duplicate: " << mismatch - found_at << " bytes repeated there)";
        }
    } else {
        text << "; no byte differs";
    }
    return text.str();
}
inline std::string describe_stream(const TransferResult& result) {
    return describe_stream(result.sent, result.received, result.eof, result.reset, result.timed_out,
                           result.error, result.elapsed, result.first_mismatch,
                           result.mismatch_found_at);
}
inline std::string describe_stream(const BackendConnection& record) {
    return describe_stream(record.sent, record.received, record.eof, record.reset, record.timed_out,
                           record.error, record.elapsed, record.first_mismatch,
                           record.mismatch_found_at);
}

// `splicer stats` of a running daemon, for a failure message.
inline std::string daemon_stats(const DaemonProcess& daemon) {
    return run_command(std::string(SPLICER_BINARY) + " stats --pin-dir " + daemon.pin_dir()).output;
}

// Waits until /proc/PID/fd is back to `baseline` (the daemon released everything).
inline int wait_for_fd_count(const DaemonProcess& daemon, int baseline,
                             std::chrono::milliseconds timeout = 10s) {
    const auto deadline = Clock::now() + timeout;
    int count = daemon.open_fd_count();
    while (count > baseline && Clock::now() < deadline) {
        std::this_thread::sleep_for(50ms);
        count = daemon.open_fd_count();
    }
    return count;
}

// Keyed BPF map entries per pinned path (sockhash, peer map): what a daemon holds right now.
inline std::map<std::string, std::uint64_t> keyed_map_entries(const std::string& pin_dir) {
    std::map<std::string, std::uint64_t> entries;
    for (const auto& object : pinned_objects(pin_dir)) {
        if (object.entries) {
            entries[object.path] = *object.entries;
        }
    }
    return entries;
}

// The sha256 of every stream each way, as multisets: the two ends see the connections in
// different orders, so byte-exact means equal multisets.
struct StreamHashes {
    std::multiset<std::string> sent;
    std::multiset<std::string> received;
};
inline StreamHashes client_hashes(const std::vector<TransferResult>& results) {
    StreamHashes hashes;
    for (const TransferResult& result : results) {
        hashes.sent.insert(result.sent_sha256);
        hashes.received.insert(result.received_sha256);
    }
    return hashes;
}
inline StreamHashes backend_hashes(const TcpBackend& backend) {
    StreamHashes hashes;
    for (const BackendConnection& record : backend.finished()) {
        hashes.sent.insert(record.sent_sha256);
        hashes.received.insert(record.received_sha256);
    }
    return hashes;
}

// One quick round trip through the HTTPS rule: the daemon still accepts, routes and moves
// bytes. `backend` must be an exchange/record backend on the https port.
inline void check_still_serving(const SnikketPorts& ports, TcpBackend& https_backend) {
    const std::size_t before = https_backend.finished().size();
    const std::string hello = make_client_hello({.server_name = "chat.example.com"});
    UniqueFd client = connect_to(ports.listen);
    TransferOptions options;
    options.send = Outgoing{hello, 64 * 1024, 4242};
    options.expect = https_backend.script().reply.generated;
    options.timeout = 10s;
    const TransferResult result = transfer_both_ways(client.get(), options);
    INFO("still serving: sent " << result.sent << " received " << result.received
                                << (result.timed_out ? " timed out" : "") << " " << result.error);
    CHECK(result.complete(options));
    REQUIRE(https_backend.wait_for_finished(before + 1, 10s));
    const auto records = https_backend.finished();
    CHECK(records.back().received == options.send.total());
    CHECK(records.back().received_sha256 == result.sent_sha256);
}

// A daemon on data plane `plane` whose plain XMPP rule leads to a backend the test holds
// itself, and one client connected through it: the XMPP stream header sent and read whole by
// the backend, so the pair is spliced and both ends are the test's to pace
// (test_sockmap_late_pass, test_missed_wakeup, test_splice_pipes). The other rules lead
// nowhere. `workers` event loops.
struct XmppPair {
    Listener listener;
    SnikketPorts ports;
    std::unique_ptr<DaemonProcess> daemon;
    UniqueFd client;
    UniqueFd backend;
};

inline XmppPair xmpp_pair(const std::string& plane, std::uint32_t workers = 1) {
    XmppPair pair{.listener = listen_loopback()};
    const std::uint16_t unused = free_port();
    pair.ports = {
        .listen = free_port(), .xmpp_tls = unused, .https = unused, .xmpp = pair.listener.port};
    const std::string worker_line =
        workers == 1 ? "" : "workers: " + std::to_string(workers) + ";\n";
    pair.daemon = start_daemon(plane, worker_line + snikket_config(pair.ports));
    const std::string header = xmpp_stream_header();
    pair.client = connect_and_send(pair.ports.listen, header, "");
    pair.backend = accept_one(pair.listener);
    REQUIRE(read_exactly(pair.backend.get(), header.size()) == header);
    return pair;
}

}  // namespace splicer::test

// Every daemon test runs once per data plane.
#define SPLICER_FOR_EACH_PLANE(plane)                                                   \
    const std::string plane = GENERATE(as<std::string>{}, "sockmap", "splice", "copy"); \
    CAPTURE(plane)
