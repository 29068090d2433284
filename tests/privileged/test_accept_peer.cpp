// The client's address as the accept gives it (daemon/event_loop.cpp: each armed accept
// writes its client's address into a buffer of its own, no getpeername per connection): many
// clients waiting at once each get their own address, on IPv4 and IPv6 listeners, in the
// routed line and in X-Forwarded-For; and a terminated connection closed after its response
// still ends with close_notify, then the FIN; a client reset before its first byte is closed
// at its accept, not left holding its fd.

#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "daemon_test_common.h"
#include "stopped_daemon.h"
#include "support/client_hello.h"
#include "support/sockets.h"
#include "tls_termination_common.h"

using namespace splicer::test;
using splicer::UniqueFd;

TEST_CASE(
    "accept: more clients than armed accepts, queued at once from as many addresses, are each "
    "routed under their own address, IPv4 and IPv6, bytes exact",
    "[probe][accept]") {
    TcpBackend https(BackendScript::record());
    const SnikketPorts ports{
        .listen = free_port(), .xmpp_tls = free_port(), .https = https.port(), .xmpp = free_port()};
    auto daemon = start_daemon("copy", snikket_config(ports, {.probe_timeout_seconds = 5}));
    const std::string hello = make_client_hello({.server_name = "chat.example.com"});
    // 140 IPv4 clients, each from its own 127/8 address, and 3 on the ::1 listener: over
    // twice the accepts armed on a listener (kAcceptsPerListener, 64), all queued before the
    // loop runs, so buffers are re-armed and written again while earlier clients are served.
    constexpr int kIpv4Clients = 140;
    constexpr int kIpv6Clients = 3;
    std::vector<UniqueFd> clients;
    {
        const StoppedDaemon stopped(daemon->pid());
        for (int i = 0; i < kIpv4Clients; ++i) {
            clients.push_back(connect_from("127.0.0." + std::to_string(20 + i), ports.listen));
            write_all(clients.back().get(), hello);
        }
        for (int i = 0; i < kIpv6Clients; ++i) {
            clients.push_back(connect_to(ports.listen, true));
            write_all(clients.back().get(), hello);
        }
    }
    // Found by the whole address: clients from different 127/8 addresses may be given the
    // same ephemeral port (140 of them share one about a third of the runs), so a port alone
    // can name another client's line.
    for (std::size_t i = 0; i < clients.size(); ++i) {
        const std::string address = local_address(clients[i].get());
        CAPTURE(i, address);
        const auto routed = daemon->wait_for_log(
            "routed", [&](const LogLine& line) { return line.get("client") == address; }, 10s);
        INFO(daemon->log_tail(20));
        REQUIRE(routed.has_value());
        CHECK(routed->get("sni") == "chat.example.com");
        ::shutdown(clients[i].get(), SHUT_WR);
    }
    // One routed line per client, each under a client address of its own: none was logged
    // under an address that another accept wrote.
    std::set<std::string> logged;
    for (const auto& line : daemon->logs("routed")) {
        logged.insert(std::string(line.get("client")));
    }
    CHECK(daemon->logs("routed").size() == clients.size());
    CHECK(logged.size() == clients.size());
    REQUIRE(https.wait_for_finished(clients.size(), 10s));
    for (const auto& finished : https.finished()) {
        CHECK(finished.received_sha256 == sha256_hex(hello));
    }
    stop_daemon(*daemon);
}

TEST_CASE(
    "accept: clients reset before their first byte, queued while the daemon was stopped, are "
    "each closed and logged at their accept and leave no fd",
    "[probe][accept]") {
    TcpBackend https(BackendScript::record());
    const SnikketPorts ports{
        .listen = free_port(), .xmpp_tls = free_port(), .https = https.port(), .xmpp = free_port()};
    // A probe timeout far past the wait below: only the first look at accept can end them.
    auto daemon = start_daemon("copy", snikket_config(ports, {.probe_timeout_seconds = 60}));
    const int baseline = daemon->open_fd_count();
    REQUIRE(baseline > 0);
    // Over twice the accepts armed on the listener (64). Each client's RST lands while it
    // waits in the backlog, so its accept's first peek answers ECONNRESET: the connection is
    // closed inside its accept, with no operation in flight and no completion to finish it
    // later.
    constexpr std::size_t kClients = 140;
    {
        const StoppedDaemon stopped(daemon->pid());
        for (std::size_t i = 0; i < kClients; ++i) {
            close_with_reset(connect_to(ports.listen));
        }
    }
    const auto deadline = Clock::now() + 10s;
    while (daemon->logs("closed").size() < kClients && Clock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
    }
    INFO(daemon->log_tail(30));
    CHECK(daemon->logs("closed").size() == kClients);
    CHECK(wait_for_fd_count(*daemon, baseline) == baseline);
    stop_daemon(*daemon);
}

TEST_CASE(
    "accept: a terminated request's X-Forwarded-For and routed client are the client's "
    "address on IPv4 and IPv6 listeners",
    "[tls][tls_terminate][accept]") {
    require_root();
    TerminatingSite site;
    std::string config = terminating_config(site);
    const std::string v4_listen =
        "{ host: \"127.0.0.1\"; port: \"" + std::to_string(site.listen) + "\"; }";
    const std::size_t at = config.find(v4_listen);
    REQUIRE(at != std::string::npos);
    config.insert(at + v4_listen.size(),
                  ", { host: \"::1\"; port: \"" + std::to_string(site.listen) + "\"; }");
    auto daemon = start_daemon("sockmap", config);
    const std::string port = std::to_string(site.listen);
    struct Case {
        std::string resolve_to;  // the listener's address as curl's --resolve takes it
        std::string interface;   // curl --interface: the client's own address
        std::string client;      // X-Forwarded-For
        std::string logged;      // how the routed line starts its client field
    };
    const std::vector<Case> cases = {
        {"127.0.0.1", "127.0.0.3", "127.0.0.3", "127.0.0.3:"},
        {"[::1]", "::1", "::1", "[::1]:"},
    };
    std::size_t seen = 0;
    for (const Case& one : cases) {
        CAPTURE(one.client);
        const std::string path = "/from/" + std::to_string(seen);
        const CommandResult got = run_command(
            "curl -sS --max-time 30 --http1.1 --interface " + one.interface + " --cacert " +
            site.pki.ca.string() + " --resolve chat.example.com:" + port + ":" +
            one.resolve_to + " -H 'Connection: close' 'https://chat.example.com:" + port +
            path + "'");
        INFO(got.output << daemon->log_tail(20));
        CHECK(got.exit_code == 0);
        CHECK(got.output == "web GET " + path);
        REQUIRE(site.web.wait_for_requests(++seen, 10s));
        CHECK(site.web.requests().back().head.header("x-forwarded-for") == one.client);
        const auto routed = daemon->wait_for_log(
            "routed",
            [&](const LogLine& line) { return line.get("client").starts_with(one.logged); },
            5s);
        REQUIRE(routed.has_value());
        CHECK(routed->get("plane") == "tls-terminate");
    }
    stop_daemon(*daemon);
}

TEST_CASE(
    "accept: a terminated connection answered with Connection close ends with close_notify "
    "and then the FIN, and is logged closed as done",
    "[tls][tls_terminate][accept]") {
    require_root();
    TerminatingSite site;
    auto daemon = start_daemon("sockmap", terminating_config(site));
    TlsTestClient client({.port = site.listen, .servername = "chat.example.com"});
    REQUIRE(client.write(closing_request("chat.example.com", "/closing")));
    const HttpResponse answer = client.read_response();
    INFO(answer.raw_head << daemon->log_tail(20));
    CHECK(answer.complete);
    CHECK(answer.body == "web GET /closing");
    CHECK(client.wait_for_close(5s) == "close_notify");
    // Our close_notify, then our FIN while the daemon lingers for the client's end: the TCP
    // stream ends with no further byte, before the client itself closes anything.
    CHECK(wait_for_close(client.fd(), 5s) == "eof");
    ::shutdown(client.fd(), SHUT_WR);  // the client's FIN ends the daemon's linger
    const auto closed = daemon->wait_for_log(
        "closed", [](const LogLine& line) { return line.get("end") == "done"; }, 5s);
    CHECK(closed.has_value());
    stop_daemon(*daemon);
}
