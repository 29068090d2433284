// Hostile clients against a terminating listener (issue 14): a garbage record right after a
// valid ClientHello, a client that completes the handshake and then sends nothing, a client
// that leaves mid-handshake. Each is closed, logged and counted, and a keep-alive client
// connected before them, and a new one after, are served meanwhile.

#include <sys/socket.h>

#include <map>
#include <thread>

#include "support/client_hello.h"
#include "support/metrics_scrape.h"
#include "support/raw_client.h"
#include "support/sockets.h"
#include "support/tls_test_client.h"
#include "tls_termination_common.h"

using namespace splicer::test;
using splicer::UniqueFd;

namespace {

constexpr int kHeaderTimeout = 2;

// The server's answer to whatever was sent, read until it closes: how it ended and after how
// long.
struct Ending {
    std::string how;  // wait_for_close's "eof" / "reset" / "open"
    std::chrono::milliseconds after{0};
};

Ending wait_connection_ended(int fd, std::chrono::milliseconds timeout) {
    const auto start = Clock::now();
    Ending ending;
    ending.how = wait_for_close(fd, timeout);
    ending.after = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    return ending;
}

// The connection id the daemon gave the client on local port `client_port` (its routed
// line, which must say it was terminated); "" when there is none.
std::string terminated_connection(const DaemonProcess& daemon, std::uint16_t client_port) {
    const auto routed = routed_line(daemon, client_port);
    if (!routed) {
        return "";
    }
    CHECK(routed->get("plane") == "tls-terminate");
    return std::string(routed->get("conn"));
}

// The daemon's `closed` line for connection `id`, waited for.
std::optional<LogLine> closed_line_of(const DaemonProcess& daemon, const std::string& id) {
    return daemon.wait_for_log(
        "closed", [&](const LogLine& line) { return line.get("conn") == id; }, 5s);
}

}  // namespace

TEST_CASE(
    "tls termination: garbage after a ClientHello, a silent client and a client leaving "
    "mid-handshake are closed, logged and counted, others served",
    "[daemon][tls_termination][hostile]") {
    require_root();
    TerminatingSite site;
    const std::uint16_t metrics_port = free_port();
    auto daemon = start_daemon("copy", terminating_config(site, {.header_timeout = kHeaderTimeout,
                                                                 .idle_timeout = 30,
                                                                 .metrics_port = metrics_port}));
    INFO(daemon->log_tail());
    TlsTestClient bystander({.port = site.listen, .servername = "chat.example.com"});
    check_served(bystander, "/bystander-before");

    // 1. A whole, valid ClientHello for a terminated name, then a record of no known type.
    const std::string garbage_record =
        std::string("\x63\x03\x03\x00\x10", 5) + std::string(16, 'Z');
    UniqueFd garbage =
        send_client_hello(site.listen, {.server_name = "chat.example.com"}, garbage_record);
    const Ending garbage_end = wait_connection_ended(garbage.get(), 5s);
    CHECK(garbage_end.how != "open");
    const std::string garbage_id = terminated_connection(*daemon, local_port(garbage.get()));
    REQUIRE(!garbage_id.empty());
    const auto garbage_error = daemon->wait_for_log(
        "tls_error", [&](const LogLine& line) { return line.get("conn") == garbage_id; });
    REQUIRE(garbage_error.has_value());
    CHECK(garbage_error->get("side") == "client");
    CHECK(garbage_error->get("error") == "bad record type");
    const auto garbage_closed = closed_line_of(*daemon, garbage_id);
    REQUIRE(garbage_closed.has_value());
    CHECK(garbage_closed->get("end") == "tls_handshake_failed");

    // 2. The handshake, then not a byte: closed once header_timeout has passed.
    TlsTestClient silent({.port = site.listen, .servername = "chat.example.com"});
    const auto silent_start = Clock::now();
    std::string silent_end = "data";
    // An answer (a 408) may come before the close: read past it, a bounded number of times.
    for (int reads = 0; reads < 4 && silent_end == "data"; ++reads) {
        silent_end = silent.wait_for_close(std::chrono::seconds(kHeaderTimeout + 4));
    }
    const auto silent_after = Clock::now() - silent_start;
    CHECK(silent_end != "open");
    CHECK(silent_end != "data");
    CHECK(silent_after >= std::chrono::milliseconds(kHeaderTimeout * 1000 - 300));
    CHECK(silent_after < std::chrono::seconds(kHeaderTimeout + 4));
    // Answered as port 80 answers a head that never came: 408, in the access line.
    const std::string silent_id = terminated_connection(*daemon, local_port(silent.fd()));
    REQUIRE(!silent_id.empty());
    const auto timed_out = daemon->wait_for_log(
        "http", [&](const LogLine& line) { return line.get("conn") == silent_id; });
    REQUIRE(timed_out.has_value());
    CHECK(timed_out->get("status") == "408");
    CHECK(timed_out->get("error") == "header timeout");
    CHECK(timed_out->get("tls") == "1");

    // 3. A ClientHello, the server's first flight read, then the client is gone (a RST).
    UniqueFd leaving = send_client_hello(site.listen, {.server_name = "chat.example.com"});
    const std::string flight = read_exactly(leaving.get(), 5, 5000);
    CHECK(flight.size() == 5);
    CHECK(flight.front() == '\x16');  // the server's handshake record: it was terminating
    const std::uint16_t leaving_port = local_port(leaving.get());
    close_with_reset(std::move(leaving));
    const std::string leaving_id = terminated_connection(*daemon, leaving_port);
    REQUIRE(!leaving_id.empty());
    const auto leaving_closed = closed_line_of(*daemon, leaving_id);
    REQUIRE(leaving_closed.has_value());
    CHECK(leaving_closed->get("end") == "tls_handshake_failed");

    // Counted: the daemon hands its counters to the endpoint once a second. The two failed
    // handshakes are closed (the silent client may still be in its lingering close), and
    // the 408 is an answer like any other.
    std::map<std::string, std::uint64_t> samples;
    const auto deadline = Clock::now() + 10s;
    do {
        std::this_thread::sleep_for(300ms);
        samples = scrape_metrics(metrics_port);
    } while (Clock::now() < deadline &&
             (samples["splicer_connections_closed_total"] < 2 ||
              samples["splicer_http_requests_total{code=\"408\"}"] != 1));
    CHECK(samples["splicer_connections_accepted_total"] == 4);
    CHECK(samples["splicer_connections_closed_total"] >= 2);
    CHECK(samples["splicer_http_requests_total{code=\"408\"}"] == 1);

    // Others unaffected: the keep-alive client from before, and a new one.
    check_served(bystander, "/bystander-after");
    TlsTestClient newcomer({.port = site.listen, .servername = "chat.example.com"});
    check_served(newcomer, "/newcomer");
    stop_daemon(*daemon);
}
