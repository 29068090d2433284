// Accepting the PROXY protocol from a balancer (`proxyprotocol: true` and `trusted_proxies`
// on a listen entry): the header's source stands for the client in the logs, in the PROXY
// header splicer sends on (source AND destination from the received header) and in the
// per-client limit; every byte behind the header reaches the backend byte-exact on every
// plane, from IPv4 and IPv6 balancers; hostile balancers are closed and counted; real
// HAProxy 2.6 in front with send-proxy and send-proxy-v2.
//
// The headers are written here from the spec (HAProxy's doc/proxy-protocol.txt), not by the
// code under test.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <fstream>
#include <sstream>
#include <thread>

#include "daemon_test_common.h"
#include "support/file_modes.h"
#include "support/haproxy_process.h"
#include "support/http_backend.h"
#include "support/net_address.h"

namespace test = splicer::test;
using namespace std::chrono_literals;
using splicer::UniqueFd;
using splicer::test::u16;

namespace {

// The v2 PROXY/TCP header for 198.51.100.7 -> 203.0.113.5 (or 2001:db8::7 -> 2001:db8::5),
// with a TLV HAProxy would skip too (PP2_TYPE_NOOP) or without (as splicer sends it here).
// splicer's own v2 header for a TLS client adds PP2_TYPE_AUTHORITY with the SNI (`authority`).
std::string v2_header(bool ipv6, std::uint16_t source_port, std::uint16_t destination_port,
                      bool noop_tlv = true, const std::string& authority = "") {
    const std::string addresses =
        ipv6 ? std::string("\x20\x01\x0d\xb8", 4) + std::string(11, '\0') + "\x07" +
                   std::string("\x20\x01\x0d\xb8", 4) + std::string(11, '\0') + "\x05"
             : std::string("\xc6\x33\x64\x07\xcb\x00\x71\x05", 8);
    const std::string body =
        addresses + u16(source_port) + u16(destination_port) +
        (noop_tlv ? std::string("\x04\x00\x03xyz", 6) : std::string()) +
        (authority.empty()
             ? std::string()
             : "\x02" + u16(static_cast<std::uint16_t>(authority.size())) + authority);
    return std::string("\r\n\r\n\0\r\nQUIT\n", 12) + "\x21" + (ipv6 ? "\x21" : "\x11") +
           u16(static_cast<std::uint16_t>(body.size())) + body;
}

std::string v1_header(bool ipv6, std::uint16_t source_port, std::uint16_t destination_port) {
    return ipv6 ? "PROXY TCP6 2001:db8::7 2001:db8::5 " + std::to_string(source_port) + " " +
                      std::to_string(destination_port) + "\r\n"
                : "PROXY TCP4 198.51.100.7 203.0.113.5 " + std::to_string(source_port) + " " +
                      std::to_string(destination_port) + "\r\n";
}

std::string config_for(std::uint16_t listen, std::uint16_t backend_v1, std::uint16_t backend_v2,
                       const std::string& listen_options, const std::string& extra = "",
                       int probe_timeout = 1) {
    std::ostringstream text;
    text << "listen: ( { host: \"127.0.0.1\"; port: \"" << listen << "\"; " << listen_options
         << " },\n"
         << "          { host: \"::1\"; port: \"" << listen << "\"; " << listen_options << " } );\n"
         << "protocols: (\n"
         << "  { name: \"ssh\"; host: \"127.0.0.1\"; port: \"" << backend_v1
         << "\"; proxyprotocol: 1; },\n"
         << "  { name: \"tls\"; host: \"127.0.0.1\"; port: \"" << backend_v2
         << "\"; proxyprotocol: 2; }\n"
         << ");\n"
         << "timeout: " << probe_timeout << ";\nconnect_timeout: 2;\n"
         << extra;
    return text.str();
}

constexpr std::uint64_t kAcceptPipelined = 32 * 1024;
constexpr std::uint64_t kAcceptUp = 128 * 1024;
constexpr std::uint64_t kAcceptDown = 128 * 1024;
const std::string kSsh = "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n";

}  // namespace

TEST_CASE(
    "proxyprotocol listener: the header's client reaches the backend in splicer's own "
    "header, the bytes behind it byte-exact, on every plane, v1 and v2, IPv4 and IPv6",
    "[daemon][proxy_accept]") {
    test::require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    auto script = test::BackendScript::exchange(kAcceptDown, 700);
    test::TcpBackend ssh_backend(script);  // rule proxyprotocol: 1
    test::TcpBackend tls_backend(script);  // rule proxyprotocol: 2
    const std::uint16_t listen = test::free_port();
    auto daemon = test::start_daemon(
        plane, config_for(listen, ssh_backend.port(), tls_backend.port(), "proxyprotocol: true;"));

    std::uint64_t seed = 40;
    for (const bool ipv6 : {false, true}) {
        for (const int received_version : {1, 2}) {
            for (const bool tls : {false, true}) {
                CAPTURE(ipv6, received_version, tls);
                const std::uint16_t source_port = static_cast<std::uint16_t>(4000 + seed);
                const std::string header = received_version == 1
                                               ? v1_header(ipv6, source_port, 443)
                                               : v2_header(ipv6, source_port, 443);
                std::string first =
                    tls ? test::make_client_hello({.server_name = "a.example"}) : kSsh;
                const std::string pipelined = test::ByteGenerator(seed++).take(kAcceptPipelined);
                // Header, first message and pipelined data in ONE send: one segment.
                UniqueFd client = test::connect_and_send(listen, header + first, pipelined, ipv6);
                test::TcpBackend& backend = tls ? tls_backend : ssh_backend;
                const std::size_t finished_before = backend.finished().size();

                test::TransferOptions options;
                options.sent_before = header + first + pipelined;
                options.send = {.generated = kAcceptUp, .seed = seed++};
                options.timeout = 20s;
                const test::TransferResult result = test::transfer_both_ways(client.get(), options);
                INFO(daemon->log_tail(20));
                CHECK(result.complete(options));
                REQUIRE(backend.wait_for_finished(finished_before + 1, 10s));
                const test::BackendConnection record = backend.finished().back();
                // splicer's header: the received header's source and destination.
                const std::string expected_sent =
                    tls ? v2_header(ipv6, source_port, 443, false, "a.example")
                        : v1_header(ipv6, source_port, 443);
                const std::string head = record.received_head.substr(0, expected_sent.size());
                CAPTURE(head.size(), record.received_head.size());
                CHECK(head == expected_sent);
                CHECK(record.received_head.substr(expected_sent.size(), first.size()) == first);
                CHECK(record.received ==
                      expected_sent.size() + first.size() + kAcceptPipelined + kAcceptUp);
                CHECK(record.received_sha256 ==
                      test::sha256_of_generated(expected_sent + first + pipelined,
                                                options.send.seed, kAcceptUp));
                CHECK(result.received == kAcceptDown);
                CHECK(result.received_sha256 == record.sent_sha256);
                // The log names the header's client, and the balancer as via.
                const auto line = daemon->wait_for_log(
                    "proxy_header",
                    [&](const test::LogLine& l) {
                        return l.get("client").ends_with(":" + std::to_string(source_port));
                    },
                    5s);
                REQUIRE(line.has_value());
                CHECK(line->get("client") ==
                      (ipv6 ? "[2001:db8::7]:" : "198.51.100.7:") + std::to_string(source_port));
                CHECK(line->get("via") == (ipv6 ? "[::1]:" : "127.0.0.1:") +
                                              std::to_string(test::local_port(client.get())));
                REQUIRE(test::routed_line(*daemon, source_port).has_value());
            }
        }
    }
    CHECK(daemon->logs("backend_failed").empty());
    test::stop_daemon(*daemon);
}

TEST_CASE(
    "proxyprotocol listener: no header, garbage, a truncated-then-silent header and an "
    "untrusted balancer are closed and counted, and a header in many small segments is read",
    "[daemon][proxy_accept]") {
    test::require_root();
    auto script = test::BackendScript::exchange(0, 701);
    test::TcpBackend ssh_backend(script);
    test::TcpBackend tls_backend(script);
    const std::uint16_t listen = test::free_port();
    const std::uint16_t untrusted_listen = test::free_port();
    // The second listener trusts only a network the loopback is not in.
    const std::string extra =
        "listen: ( { host: \"127.0.0.1\"; port: \"" + std::to_string(listen) +
        "\"; proxyprotocol: true; trusted_proxies: [ \"127.0.0.0/8\", \"::1/128\" ]; },\n"
        "          { host: \"127.0.0.1\"; port: \"" +
        std::to_string(untrusted_listen) +
        "\"; proxyprotocol: true; trusted_proxies: [ \"198.18.0.0/15\" ]; } );\n";
    std::string config = config_for(listen, ssh_backend.port(), tls_backend.port(), "");
    config = extra + config.substr(config.find("protocols:"));
    auto daemon = test::start_daemon("copy", config);

    struct Case {
        std::string name;
        std::string bytes;
        std::uint16_t port;
        std::string counter;
        std::chrono::milliseconds within;
    };
    const std::vector<Case> cases = {
        {"no header: a ClientHello first", test::make_client_hello({.server_name = "a.example"}),
         listen, "proxy_header_missing", 1500ms},
        {"no header: SSH first", kSsh, listen, "proxy_header_missing", 1500ms},
        {"garbage", std::string("\x00\xff garbage\r\n", 11), listen, "proxy_header_missing",
         1500ms},
        {"malformed v1", "PROXY TCP4 198.51.100.7 203.0.113.5 99999 443\r\n" + kSsh, listen,
         "proxy_header_malformed", 1500ms},
        {"oversized v1", "PROXY UNKNOWN " + std::string(200, 'x') + "\r\n", listen,
         "proxy_header_malformed", 1500ms},
        {"oversized v2", std::string("\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff", 16), listen,
         "proxy_header_malformed", 1500ms},
        // The probe timeout (1 s) bounds a header that never completes.
        {"truncated then silent", "PROXY TCP4 198.51.100.7 203.0", listen, "proxy_header_timeout",
         3000ms},
        {"untrusted balancer", v1_header(false, 5000, 443) + kSsh, untrusted_listen,
         "proxy_header_untrusted", 1500ms},
    };
    for (const Case& c : cases) {
        CAPTURE(c.name);
        const std::uint64_t before = test::daemon_counter(*daemon, c.counter);
        UniqueFd client = test::connect_and_send(c.port, c.bytes, "");
        const auto started = test::Clock::now();
        const std::string outcome = test::wait_for_close(client.get(), c.within + 2s);
        const auto took = test::Clock::now() - started;
        INFO(daemon->log_tail(10));
        CHECK((outcome == "eof" || outcome == "reset"));
        CHECK(took < c.within + 1s);
        // Published once a second.
        std::uint64_t after = before;
        for (int i = 0; i < 30 && after == before; ++i) {
            std::this_thread::sleep_for(100ms);
            after = test::daemon_counter(*daemon, c.counter);
        }
        CHECK(after == before + 1);
    }
    CHECK(ssh_backend.finished().empty());
    CHECK(tls_backend.finished().empty());

    {
        // A header split across many small segments is read, the bytes behind it kept.
        UniqueFd client = test::connect_to(listen, false);
        const int one = 1;
        REQUIRE(::setsockopt(client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0);
        const std::string header = v2_header(false, 6000, 443);
        for (const char byte : header) {
            REQUIRE(::send(client.get(), &byte, 1, MSG_NOSIGNAL) == 1);
            std::this_thread::sleep_for(5ms);
        }
        const std::string behind = kSsh + test::ByteGenerator(77).take(1000);
        REQUIRE(::send(client.get(), behind.data(), behind.size(), MSG_NOSIGNAL) ==
                static_cast<ssize_t>(behind.size()));
        ::shutdown(client.get(), SHUT_WR);
        REQUIRE(ssh_backend.wait_for_finished(1, 10s));
        const test::BackendConnection record = ssh_backend.finished().back();
        const std::string sent = v1_header(false, 6000, 443);
        CHECK(record.received_head == sent + behind);
        CHECK(record.received == sent.size() + behind.size());
    }
    test::stop_daemon(*daemon);
}

TEST_CASE(
    "proxyprotocol listener: max_connections_per_client counts the header's clients, "
    "not the balancer",
    "[daemon][proxy_accept]") {
    test::require_root();
    auto script = test::BackendScript::exchange(0, 702);
    test::TcpBackend ssh_backend(script);
    test::TcpBackend tls_backend(script);
    const std::uint16_t listen = test::free_port();
    // Pressure from 4 held connections (half of 8); each header client may hold 2.
    auto daemon = test::start_daemon(
        "copy", config_for(listen, ssh_backend.port(), tls_backend.port(), "proxyprotocol: true;",
                           "max_connections: 8;\nmax_connections_per_client: 2;\n", 20));
    // Headers only: each connection stays held (probing) until the client's first bytes.
    auto open = [&](const std::string& source) {
        return test::connect_and_send(listen, "PROXY TCP4 " + source + " 203.0.113.5 1000 443\r\n",
                                      "");
    };
    std::vector<UniqueFd> held;
    held.push_back(open("198.51.100.1"));
    held.push_back(open("198.51.100.1"));
    held.push_back(open("198.51.100.2"));
    held.push_back(open("198.51.100.2"));
    for (int i = 0; i < 50 && daemon->logs("proxy_header").size() < 4; ++i) {
        std::this_thread::sleep_for(100ms);
    }
    REQUIRE(daemon->logs("proxy_header").size() == 4);
    // A third from 198.51.100.1 is over its limit; a first from 198.51.100.3 is not, though
    // every one of them comes from the same balancer address.
    UniqueFd third = open("198.51.100.1");
    CHECK(test::wait_for_close(third.get(), 3s) != "open");
    UniqueFd other = open("198.51.100.3");
    CHECK(test::wait_for_close(other.get(), 500ms) == "open");
    INFO(daemon->log_tail(20));
    std::uint64_t refused = 0;
    for (int i = 0; i < 30 && refused == 0; ++i) {
        std::this_thread::sleep_for(100ms);
        refused = test::daemon_counter(*daemon, "refused_per_client");
    }
    CHECK(refused == 1);
    held.clear();
    test::stop_daemon(*daemon);
}

TEST_CASE(
    "proxyprotocol listener behind HAProxy 2.6 send-proxy and send-proxy-v2: the backend "
    "sees the original client in splicer's own header, IPv4 and IPv6",
    "[daemon][proxy_accept]") {
    test::require_root();
    const std::string plane = GENERATE(as<std::string>{}, "sockmap", "splice", "copy");
    CAPTURE(plane);
    auto script = test::BackendScript::exchange(4096, 703);
    test::TcpBackend ssh_backend(script);  // rule proxyprotocol: 1
    test::TcpBackend tls_backend(script);  // rule proxyprotocol: 2
    const std::uint16_t listen = test::free_port();
    auto daemon = test::start_daemon(
        plane, config_for(listen, ssh_backend.port(), tls_backend.port(),
                          "proxyprotocol: true; trusted_proxies: [ \"127.0.0.1\", \"::1\" ];"));

    const std::uint16_t front_v1 = test::free_port();
    const std::uint16_t front_v2 = test::free_port();
    std::ostringstream haproxy_config;
    haproxy_config << "global\n  maxconn 100\n"
                   << "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n"
                   << "  timeout server 10s\n"
                   << "listen front_v1\n  bind 127.0.0.1:" << front_v1
                   << "\n  bind [::1]:" << front_v1 << "\n  server splicer 127.0.0.1:" << listen
                   << " send-proxy\n"
                   << "listen front_v2\n  bind 127.0.0.1:" << front_v2
                   << "\n  bind [::1]:" << front_v2 << "\n  server splicer [::1]:" << listen
                   << " send-proxy-v2\n";
    const test::HaproxyProcess haproxy(haproxy_config.str(), {front_v1, front_v2});

    std::uint64_t seed = 90;
    for (const bool ipv6 : {false, true}) {
        for (const int haproxy_version : {1, 2}) {
            for (const bool tls : {false, true}) {
                CAPTURE(ipv6, haproxy_version, tls);
                const std::uint16_t front = haproxy_version == 1 ? front_v1 : front_v2;
                const std::string first =
                    tls ? test::make_client_hello({.server_name = "a.example"}) : kSsh;
                const std::string pipelined = test::ByteGenerator(seed++).take(kAcceptPipelined);
                UniqueFd client = test::connect_and_send(front, first, pipelined, ipv6);
                const std::uint16_t client_port = test::local_port(client.get());
                test::TcpBackend& backend = tls ? tls_backend : ssh_backend;
                const std::size_t finished_before = backend.finished().size();
                test::TransferOptions options;
                options.sent_before = first + pipelined;
                options.send = {.generated = kAcceptUp, .seed = seed++};
                options.timeout = 20s;
                const test::TransferResult result = test::transfer_both_ways(client.get(), options);
                INFO(daemon->log_tail(20) << "\nhaproxy: " << haproxy.log());
                CHECK(result.complete(options));
                REQUIRE(backend.wait_for_finished(finished_before + 1, 10s));
                const test::BackendConnection record = backend.finished().back();
                // The original client (its port), and the HAProxy address it reached.
                const std::string ip = ipv6 ? "::1" : "127.0.0.1";
                std::string expected;
                if (!tls) {
                    expected = std::string("PROXY ") + (ipv6 ? "TCP6 " : "TCP4 ") + ip + " " + ip +
                               " " + std::to_string(client_port) + " " + std::to_string(front) +
                               "\r\n";
                } else {
                    const std::string v4("\x7f\x00\x00\x01", 4);
                    const std::string v6 = std::string(15, '\0') + "\x01";
                    const std::string body = (ipv6 ? v6 + v6 : v4 + v4) + u16(client_port) +
                                             u16(front) + "\x02" + u16(9) + "a.example";
                    expected = std::string("\r\n\r\n\0\r\nQUIT\n", 12) + "\x21" +
                               (ipv6 ? "\x21" : "\x11") +
                               u16(static_cast<std::uint16_t>(body.size())) + body;
                }
                CHECK(record.received_head.substr(0, expected.size()) == expected);
                CHECK(record.received_head.substr(expected.size(), first.size()) == first);
                CHECK(record.received ==
                      expected.size() + first.size() + kAcceptPipelined + kAcceptUp);
                CHECK(record.received_sha256 ==
                      test::sha256_of_generated(expected + first + pipelined, options.send.seed,
                                                kAcceptUp));
            }
        }
    }
    CHECK(test::daemon_counter(*daemon, "proxy_header_untrusted") == 0);
    test::stop_daemon(*daemon);
}

TEST_CASE(
    "proxyprotocol on an http listener: the header's client is X-Forwarded-For, pipelined "
    "requests behind the header are all served, and no header is closed and counted",
    "[daemon][proxy_accept][http]") {
    test::require_root();
    test::HttpBackend origin;
    const std::uint16_t http_port = test::free_port();
    std::ostringstream config;
    config << "listen: ( { host: \"127.0.0.1\"; port: \"" << test::free_port() << "\"; } );\n"
           << "protocols: ( { name: \"tls\"; host: \"127.0.0.1\"; port: \"" << test::free_port()
           << "\"; } );\n"
           << "http: {\n  listen: ( { host: \"127.0.0.1\"; port: \"" << http_port
           << "\"; proxyprotocol: true; },\n"
           << "            { host: \"::1\"; port: \"" << http_port
           << "\"; proxyprotocol: true; } );\n"
           << "  header_timeout: 2;\n"
           << "  routes: ( { hosts: [\"*\"]; backend: \"" << origin.address() << "\"; } );\n};\n";
    auto daemon = test::start_daemon("copy", config.str());

    std::size_t requests = 0;
    for (const bool ipv6 : {false, true}) {
        for (const int version : {1, 2}) {
            CAPTURE(ipv6, version);
            const std::string header =
                version == 1 ? v1_header(ipv6, 4001, 80) : v2_header(ipv6, 4001, 80);
            const std::string pipelined =
                "GET /a HTTP/1.1\r\nHost: x.example\r\n\r\n"
                "GET /b HTTP/1.1\r\nHost: x.example\r\nConnection: close\r\n\r\n";
            UniqueFd client = test::connect_and_send(http_port, header + pipelined, "", ipv6);
            std::uint64_t received = 0;
            CHECK(test::wait_for_close(client.get(), 5s, &received) == "eof");
            INFO(daemon->log_tail(20));
            requests += 2;
            REQUIRE(origin.wait_for_requests(requests, 5s));
            const auto recorded = origin.requests();
            for (std::size_t i = requests - 2; i < requests; ++i) {
                const std::string& head = recorded[i].raw_head;
                CAPTURE(head);
                CHECK(recorded[i].target == (i % 2 == 0 ? "/a" : "/b"));
                CHECK(head.find(ipv6 ? "X-Forwarded-For: 2001:db8::7\r\n"
                                     : "X-Forwarded-For: 198.51.100.7\r\n") != std::string::npos);
                CHECK(head.find("PROXY") == std::string::npos);
            }
            CHECK(received > 0);
        }
    }
    // No header: a request straight away is closed, counted, never forwarded.
    const std::uint64_t before = test::daemon_counter(*daemon, "proxy_header_missing");
    UniqueFd bare = test::connect_and_send(http_port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "");
    CHECK(test::wait_for_close(bare.get(), 3s) != "open");
    std::uint64_t after = before;
    for (int i = 0; i < 30 && after == before; ++i) {
        std::this_thread::sleep_for(100ms);
        after = test::daemon_counter(*daemon, "proxy_header_missing");
    }
    CHECK(after == before + 1);
    CHECK(origin.requests().size() == requests);
    test::stop_daemon(*daemon);
}

TEST_CASE("proxyprotocol and trusted_proxies are start-up settings: a reload changing them "
          "says it did not apply them, and the listener goes on as it started",
          "[daemon][proxy_accept][reload]") {
    test::require_root();
    auto script = test::BackendScript::exchange(0, 704);
    test::TcpBackend ssh_backend(script);
    test::TcpBackend tls_backend(script);
    const std::uint16_t listen = test::free_port();
    auto daemon = test::start_daemon(
        "copy", config_for(listen, ssh_backend.port(), tls_backend.port(), "", "", 5));
    {
        // The dropped daemon (not root any more) rereads the file: let it.
        test::make_readable_by_all(daemon->config_path());
        daemon->rewrite_config(
            config_for(listen, ssh_backend.port(), tls_backend.port(),
                       "proxyprotocol: true; trusted_proxies: [ \"127.0.0.1\" ];", "", 5));
    }
    const std::size_t from = daemon->log_count();
    ::kill(daemon->pid(), SIGHUP);
    INFO(daemon->log_tail(10));
    REQUIRE(daemon->wait_for_log("reloaded", {}, 10s, from).has_value());
    CHECK(daemon->wait_for_log("reload_partial", {}, 1s, from).has_value());
    // Still no PROXY header expected: an SSH client straight away is served.
    UniqueFd client = test::connect_and_send(listen, kSsh, "");
    ::shutdown(client.get(), SHUT_WR);
    REQUIRE(ssh_backend.wait_for_finished(1, 10s));
    const std::string sent = ssh_backend.finished().back().received_head;
    CHECK(sent.substr(sent.find("\r\n") + 2) == kSsh);  // splicer's v1 header, then the banner
    test::stop_daemon(*daemon);
}
