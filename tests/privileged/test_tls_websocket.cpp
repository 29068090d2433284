// A WebSocket through a terminated TLS connection, end to end with real peers: Debian's
// python3-websockets as both the client (wss://, the test CA) and the echo server behind an
// https route (tests/scripts/websocket_peer.py). After the 101 the daemon relays the stream
// through OpenSSL (daemon/tls_relay.h): 4 MiB echoed while both directions run at once, the
// library's own framing and closing handshake checked, closed from either side.

#include <catch2/catch.hpp>
#include <chrono>
#include <sstream>
#include <string>

#include "http_test_common.h"
#include "support/command.h"
#include "support/listening_child.h"
#include "support/process.h"
#include "support/test_certificates.h"

using namespace splicer::test;
using namespace std::chrono_literals;

namespace {

const std::string kPeer = SPLICER_SOURCE_DIR "/tests/scripts/websocket_peer.py";

struct WebSocketSite {
    TestCertificates pki;
    std::uint16_t tls_listen = free_port();
    std::uint16_t echo_port = free_port();
    ChildProcess echo;

    WebSocketSite()
        : echo(SpawnOptions{
              .argv = {"/usr/bin/python3", kPeer, "server", std::to_string(echo_port)}}) {
        wait_until_listening(echo, {.name = "websocket echo server", .ports = {echo_port}});
    }
};

std::string websocket_config(const WebSocketSite& site) {
    std::ostringstream text;
    text << "listen: ( { host: \"127.0.0.1\"; port: \"" << site.tls_listen << "\"; } );\n"
         << "protocols: ( { name: \"tls\"; sni_hostnames: [ \"a.test\" ]; terminate: true; } );\n"
         << "https: {\n"
         << "  certificates: ( { certificate: \"" << site.pki.a_chain.string() << "\"; key: \""
         << site.pki.a_key.string() << "\"; } );\n"
         << "  idle_timeout: 10;\n"
         << "  routes: ( { hosts: [ \"a.test\" ]; backend: \"127.0.0.1:" << site.echo_port
         << "\"; } );\n"
         << "};\n";
    return text.str();
}

// Runs the client: `messages` binary messages of `size` bytes, closed by `closer`.
CommandResult websocket_client(const WebSocketSite& site, int messages, int size,
                               const std::string& closer) {
    return run_command("timeout 60 /usr/bin/python3 " + kPeer + " client " +
                       std::to_string(site.tls_listen) + " a.test " + site.pki.ca.string() + " " +
                       std::to_string(messages) + " " + std::to_string(size) + " " + closer);
}

}  // namespace

TEST_CASE(
    "tls websocket: a terminated WebSocket echoes 4 MiB both ways at once, closed by "
    "either side",
    "[tls][tls_relay]") {
    require_root();
    WebSocketSite site;
    auto daemon = start_daemon("copy", websocket_config(site));

    const std::string closer = GENERATE(as<std::string>{}, "client", "server");
    CAPTURE(closer);
    const CommandResult result = websocket_client(site, 64, 64 * 1024, closer);
    INFO(result.output << "\n" << daemon->log_tail(20));
    CHECK(result.exit_code == 0);
    CHECK(result.output.find("\"ok\": true") != std::string::npos);
    CHECK(result.output.find("\"bytes\": 4194304") != std::string::npos);
    CHECK(result.output.find("\"close_code\": 1000") != std::string::npos);

    // The 101 was answered through the https route and the connection was relayed, not
    // spliced; it ended in order, every byte counted each way (frames add their headers).
    const auto upgraded = access_line(*daemon, "/ws", 101);
    REQUIRE(upgraded.has_value());
    CHECK(upgraded->get("tls") == "1");
    // The first routed line is the terminating rule's; the second, the upgrade's.
    const auto routed = daemon->wait_for_log(
        "routed", [](const LogLine& line) { return line.get("protocol") == "http-upgrade"; }, 5s);
    REQUIRE(routed.has_value());
    CHECK(routed->get("plane") == "tls_relay");
    // A fresh daemon per closer (GENERATE runs the case again): its first close is this one.
    const auto last = daemon->wait_for_log("closed", {}, 10s);
    REQUIRE(last.has_value());
    CHECK(last->get("end") == "done");
    CHECK(std::stoull(std::string(last->get("bytes_in"))) >= 4194304ULL);
    CHECK(std::stoull(std::string(last->get("bytes_out"))) >= 4194304ULL);
    stop_daemon(*daemon);
}
