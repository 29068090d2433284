// Connection limits: max_connections (global and per listener), max_probing and
// max_connections_per_client. Over a limit the newest connection is closed at once, counted,
// and logged once per second; what is already held goes on, and accept() goes on for every
// other listener and client.

#include <poll.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "daemon_test_common.h"
#include "support/command.h"
#include "support/http_backend.h"
#include "support/http_wire.h"

using namespace splicer::test;
using splicer::UniqueFd;

namespace {

struct Setup {
    std::unique_ptr<TcpBackend> https = std::make_unique<TcpBackend>(BackendScript::exchange(4096));
    std::unique_ptr<TcpBackend> unused = std::make_unique<TcpBackend>(BackendScript::record());
    SnikketPorts ports;
    std::unique_ptr<DaemonProcess> daemon;

    // The Snikket config with a 10 s probe timeout (silent clients stay held, probing) and
    // `limits` prepended; listeners on 127.0.0.1 and ::1.
    // `appended` goes after it (e.g. an http section).
    explicit Setup(const std::string& limits, const std::string& listener_options = "",
                   const std::string& appended = "") {
        ports = {.listen = free_port(), .xmpp_tls = unused->port(), .https = https->port(),
                 .xmpp = unused->port()};
        std::string config =
            snikket_config(ports, {.probe_timeout_seconds = 10, .on_timeout_xmpp = false});
        if (!listener_options.empty()) {
            const std::string first =
                "{ host: \"127.0.0.1\"; port: \"" + std::to_string(ports.listen) + "\";";
            const std::size_t at = config.find(first);
            REQUIRE(at != std::string::npos);
            config.insert(at + first.size(), " " + listener_options);
        }
        daemon = start_daemon("sockmap", limits + config + appended);
    }

    // `splicer stats` shows `counter` at `expected`; then the daemon stops cleanly.
    void expect_counted_and_stop(const std::string& counter, std::uint64_t expected) const {
        CHECK(wait_for_counter(*daemon, counter, expected) == expected);
        stop_daemon(*daemon);
    }
};

// `count` silent clients from `source`, each held (not closed) by the daemon.
std::vector<UniqueFd> held_clients(const char* source, std::uint16_t port, int count) {
    std::vector<UniqueFd> clients;
    for (int i = 0; i < count; ++i) {
        clients.push_back(connect_from(source, port));
    }
    for (const UniqueFd& client : clients) {
        CHECK_FALSE(closed_by_peer(client, 200ms));
    }
    return clients;
}

// `count` more clients from `source`: every one closed at once.
void expect_refused(const char* source, std::uint16_t port, int count) {
    for (int i = 0; i < count; ++i) {
        const UniqueFd client = connect_from(source, port);
        CAPTURE(i);
        CHECK(closed_by_peer(client, 2s));
    }
}

// One connection_refused line for a burst (the lines are once per second), naming `reason`.
void expect_one_log_line(const DaemonProcess& daemon, const std::string& reason) {
    // The line may still be on its way through the daemon's stderr (under ASan it came 0.2 s
    // after the last refused client had seen its close).
    daemon.wait_for_log("connection_refused", {}, 3s);
    const auto lines = daemon.logs("connection_refused");
    INFO(daemon.log_tail(20));
    REQUIRE(lines.size() >= 1);
    CHECK(lines.size() <= 2);
    CHECK(lines.front().get("reason") == reason);
}

}  // namespace

TEST_CASE("max_connections: the newest is closed, the held ones stay, then serving resumes",
          "[daemon][limits]") {
    require_root();
    Setup setup("max_connections: 3;\nmax_connections_per_client: 100;\n");
    auto held = held_clients("127.0.0.1", setup.ports.listen, 3);
    expect_refused("127.0.0.1", setup.ports.listen, 20);
    expect_one_log_line(*setup.daemon, "max_connections");
    for (const UniqueFd& client : held) {
        CHECK_FALSE(closed_by_peer(client, 10ms));  // never dropped to make room
    }
    held.clear();
    std::this_thread::sleep_for(300ms);  // the daemon sees the three closes
    check_still_serving(setup.ports, *setup.https);
    setup.expect_counted_and_stop("refused", 20);
}

TEST_CASE("a listener's max_connections refuses on that listener only", "[daemon][limits]") {
    require_root();
    Setup setup("max_connections_per_client: 100;\n", "max_connections: 2;");
    auto held = held_clients("127.0.0.1", setup.ports.listen, 2);
    expect_refused("127.0.0.1", setup.ports.listen, 5);
    expect_one_log_line(*setup.daemon, "max_connections_per_listener");
    // The [::1] listener is not limited: it still accepts and serves.
    const std::string hello = make_client_hello({.server_name = "chat.example.com"});
    UniqueFd over_ipv6 = connect_to(setup.ports.listen, true);
    TransferOptions options;
    options.send = Outgoing{hello, 4096, 5};
    options.expect = setup.https->script().reply.generated;
    options.timeout = 10s;
    CHECK(transfer_both_ways(over_ipv6.get(), options).complete(options));
    setup.expect_counted_and_stop("refused_per_listener", 5);
}

TEST_CASE("max_connections_per_client refuses that client only", "[daemon][limits]") {
    require_root();
    // The per-client limit applies under pressure: with 2 of max_connections 4 held.
    Setup setup("max_connections: 4;\nmax_connections_per_client: 2;\n");
    auto held = held_clients("127.0.0.2", setup.ports.listen, 2);
    expect_refused("127.0.0.2", setup.ports.listen, 5);
    expect_one_log_line(*setup.daemon, "max_connections_per_client");
    // Another client address is still accepted (and held, probing).
    auto others = held_clients("127.0.0.3", setup.ports.listen, 2);
    // A connection the client closes frees its place.
    held.pop_back();
    std::this_thread::sleep_for(300ms);
    auto again = held_clients("127.0.0.2", setup.ports.listen, 1);
    setup.expect_counted_and_stop("refused_per_client", 5);
}

TEST_CASE("max_probing refuses silent newcomers, not routed connections", "[daemon][limits]") {
    require_root();
    Setup setup("max_probing: 2;\nmax_connections_per_client: 100;\n");
    // A routed, spliced connection does not count as probing.
    const std::string hello = make_client_hello({.server_name = "chat.example.com"});
    UniqueFd spliced = connect_and_send(setup.ports.listen, hello, "");
    REQUIRE(setup.https->wait_for_accepted(1, 5s));
    auto silent = held_clients("127.0.0.1", setup.ports.listen, 2);
    expect_refused("127.0.0.1", setup.ports.listen, 5);
    expect_one_log_line(*setup.daemon, "max_probing");
    // The spliced connection still moves bytes.
    TransferOptions options;
    options.sent_before = hello;
    options.send = Outgoing{"", 64 * 1024, 3};
    options.expect = setup.https->script().reply.generated;
    options.timeout = 10s;
    CHECK(transfer_both_ways(spliced.get(), options).complete(options));
    // Once a silent one leaves, a newcomer may probe again.
    silent.pop_back();
    std::this_thread::sleep_for(300ms);
    auto newcomer = held_clients("127.0.0.1", setup.ports.listen, 1);
    setup.expect_counted_and_stop("refused_probing", 5);
}

TEST_CASE("an http listener's max_connections refuses on that listener only", "[daemon][limits]") {
    require_root();
    HttpBackend web("web");
    const std::uint16_t limited = free_port();
    const std::uint16_t open = free_port();
    const std::string http_section =
        "http: {\n  listen: ( { host: \"127.0.0.1\"; port: \"" + std::to_string(limited) +
        "\"; max_connections: 2; },\n              { host: \"127.0.0.1\"; port: \"" +
        std::to_string(open) + "\"; } );\n  routes: ( { hosts: [ \"*\" ]; backend: \"" +
        web.address() + "\"; } );\n};\n";
    Setup setup("max_connections_per_client: 100;\n", "", http_section);
    // Two silent clients wait for their head (header_timeout 10 s): held; the rest refused.
    auto held = held_clients("127.0.0.1", limited, 2);
    expect_refused("127.0.0.1", limited, 5);
    expect_one_log_line(*setup.daemon, "max_connections_per_listener");
    // The other http listener and the 443 listener still serve.
    const HttpResponse response =
        http_exchange(open, "GET /other HTTP/1.1\r\nHost: chat.example.com\r\n\r\n");
    CHECK(response.status == 200);
    CHECK(response.body == "web GET /other");
    check_still_serving(setup.ports, *setup.https);
    // A held one that leaves frees its place.
    held.pop_back();
    std::this_thread::sleep_for(300ms);
    const UniqueFd newcomer = connect_from("127.0.0.1", limited);
    write_all(newcomer.get(), "GET /again HTTP/1.1\r\nHost: chat.example.com\r\n\r\n");
    BufferedReader reader(newcomer.get(), 5s);
    CHECK(read_response(reader).body == "web GET /again");
    setup.expect_counted_and_stop("refused_per_listener", 5);
}

TEST_CASE("max_probing full on 443 does not refuse port 80 clients", "[daemon][limits]") {
    require_root();
    HttpBackend web("web");
    const std::uint16_t http_port = free_port();
    const std::string http_section =
        "http: {\n  listen: ( { host: \"127.0.0.1\"; port: \"" + std::to_string(http_port) +
        "\"; } );\n  routes: ( { hosts: [ \"*\" ]; backend: \"" + web.address() +
        "\"; } );\n};\n";
    Setup setup("max_probing: 2;\nmax_connections_per_client: 100;\n", "", http_section);
    auto silent = held_clients("127.0.0.1", setup.ports.listen, 2);
    expect_refused("127.0.0.1", setup.ports.listen, 3);
    // Port 80 connections neither count as probing nor are refused by it: silent ones are
    // held (until header_timeout) and a GET is served.
    auto waiting = held_clients("127.0.0.1", http_port, 3);
    const HttpResponse response =
        http_exchange(http_port, "GET /during HTTP/1.1\r\nHost: chat.example.com\r\n\r\n");
    CHECK(response.status == 200);
    CHECK(response.body == "web GET /during");
    setup.expect_counted_and_stop("refused_probing", 3);
}
