// Probing cost: a large ClientHello that arrives in many small segments must be peeked a
// few times, each byte copied about once, instead of everything queued being peeked again
// on every segment (quadratic in the hello's size). The routed line reports the peeks.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "daemon_test_common.h"
#include "stopped_daemon.h"
#include "support/client_hello.h"

using namespace splicer::test;
using splicer::UniqueFd;

namespace {

// SO_PEEK_OFF on TCP sockets came with Linux 6.9; before it every peek starts at the head of
// the queue, so bytes already peeked are copied again on each wake-up.
bool tcp_peek_offset_supported() {
    const UniqueFd probe(::socket(AF_INET, SOCK_STREAM, 0));
    const int zero = 0;
    return ::setsockopt(probe.get(), SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)) == 0;
}

}  // namespace

TEST_CASE(
    "probing: a ClientHello queued before the accept is handled is decided without a wait, "
    "one that comes later after a wait, both relayed byte-exact",
    "[probe]") {
    TcpBackend https(BackendScript::record());
    const SnikketPorts ports{
        .listen = free_port(), .xmpp_tls = free_port(), .https = https.port(), .xmpp = free_port()};
    auto daemon = start_daemon("copy", snikket_config(ports, {.probe_timeout_seconds = 5}));
    const std::string hello = make_client_hello({.server_name = "chat.example.com"});
    std::vector<UniqueFd> clients;
    {
        // The daemon stopped while the client connects and sends: the kernel completes the
        // TCP handshake and queues the hello, so it is there when the accept is handled.
        const StoppedDaemon stopped(daemon->pid());
        clients.push_back(connect_to(ports.listen));
        write_all(clients.back().get(), hello);
    }
    // The record header alone cannot be decided on, whether or not it is queued at the
    // accept: the rest comes after a pause, so the probe must wait at least once (and its
    // peek offset starts past whatever it had peeked).
    clients.push_back(connect_to(ports.listen));
    write_all(clients.back().get(), hello.substr(0, 5));
    std::this_thread::sleep_for(300ms);
    write_all(clients.back().get(), hello.substr(5));
    for (std::size_t i = 0; i < clients.size(); ++i) {
        CAPTURE(i);
        const auto routed = routed_line(*daemon, local_port(clients[i].get()), 10s);
        INFO(daemon->log_tail(10));
        REQUIRE(routed.has_value());
        CHECK(routed->get("sni") == "chat.example.com");
        const auto waits = routed->number("probe_waits");
        REQUIRE(waits.has_value());
        if (i == 0) {
            CHECK(*waits == 0);
        } else {
            CHECK(*waits >= 1);
        }
        ::shutdown(clients[i].get(), SHUT_WR);
    }
    REQUIRE(https.wait_for_finished(2, 10s));
    for (const auto& finished : https.finished()) {
        CHECK(finished.received_sha256 == sha256_hex(hello));
    }
    stop_daemon(*daemon);
}

TEST_CASE(
    "probing: a 58 KiB ClientHello in 500-byte segments is peeked a few times, each "
    "byte about once",
    "[probe]") {
    const std::string plane = GENERATE(as<std::string>{}, "sockmap", "copy");
    const bool tiny_records = GENERATE(false, true);
    CAPTURE(plane, tiny_records);
    TcpBackend https(BackendScript::record());
    const SnikketPorts ports{
        .listen = free_port(), .xmpp_tls = free_port(), .https = https.port(), .xmpp = free_port()};
    auto daemon = start_daemon(plane, snikket_config(ports, {.probe_timeout_seconds = 5}));

    // Post-quantum key shares already make hellos ~22 KB; this one is close to the 60 KiB cap.
    const std::string hello = make_client_hello({.server_name = "chat.example.com",
                                                 .padding_extension_bytes = 57 * 1024,
                                                 .max_fragment = tiny_records ? 512U : 0U});
    REQUIRE(hello.size() > 57 * 1024);
    UniqueFd client = connect_to(ports.listen);
    const int one = 1;
    REQUIRE(::setsockopt(client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0);
    constexpr std::size_t kSegment = 500;
    std::size_t segments = 0;
    for (std::size_t at = 0; at < hello.size(); at += kSegment) {
        write_all(client.get(), hello.substr(at, kSegment));
        ++segments;
        std::this_thread::sleep_for(1ms);  // one segment per write, each its own arrival
    }
    const auto routed = routed_line(*daemon, local_port(client.get()), 10s);
    INFO(daemon->log_tail(10));
    REQUIRE(routed.has_value());
    CHECK(routed->get("sni") == "chat.example.com");
    ::shutdown(client.get(), SHUT_WR);
    REQUIRE(https.wait_for_finished(1, 10s));
    CHECK(https.finished().at(0).received_sha256 == sha256_hex(hello));

    const auto peeks = routed->number("probe_peeks");
    const auto peeked = routed->number("probe_peek_bytes");
    REQUIRE(peeks.has_value());
    REQUIRE(peeked.has_value());
    INFO(hello.size() << "-byte hello in " << segments << " segments: " << *peeks
                      << " peeks copied " << *peeked << " bytes");
    // Re-peeking the whole queue on each arrival copied ~segments/2 times the hello (about
    // 3.5 MB here); waiting for the bytes the parser says it needs, and peeking past what was
    // already peeked, copies each byte once and wakes a handful of times.
    CHECK(*peeked <= (tcp_peek_offset_supported() ? hello.size() + 4096 : 4 * hello.size()));
    CHECK(*peeks <= 12);
    stop_daemon(*daemon);
}
