// The daemon's life around its BPF objects: pins a killed daemon left behind are replaced at
// the next start, and a pair the sockhash refuses is still served (and counted).

#include <signal.h>
#include <sys/socket.h>

#include <filesystem>

#include "daemon_test_common.h"
#include "support/command.h"

using namespace splicer::test;
using splicer::UniqueFd;

namespace {

// Only the HTTPS rule has a backend; the other rules point at ports nobody listens on.
SnikketPorts ports_with_https_backend(std::uint16_t https) {
    SnikketPorts ports;
    ports.listen = free_port();
    ports.https = https;
    ports.xmpp_tls = free_port();
    ports.xmpp = free_port();
    return ports;
}

}  // namespace

TEST_CASE("pins left by a killed daemon are replaced at the next start", "[daemon]") {
    require_root();
    TcpBackend https(BackendScript::exchange(64 * 1024));
    const SnikketPorts ports = ports_with_https_backend(https.port());
    const std::string config = snikket_config(ports);
    const std::string pins = unique_pin_dir();

    DaemonOptions options;
    options.binary = SPLICER_BINARY;
    options.config_text = config;
    options.splice_mode = "sockmap";
    options.pin_dir = pins;
    {
        DaemonProcess killed(options);
        REQUIRE(killed.wait_ready(15s));
        REQUIRE(std::filesystem::exists(pins + "/sockets"));
        killed.stop(5s, SIGKILL);
        // SIGKILL runs no clean-up: the pins stay behind.
        CHECK(std::filesystem::exists(pins + "/sockets"));
        CHECK(std::filesystem::exists(pins + "/counters"));

        DaemonProcess next(options);
        const bool ready = next.wait_ready(15s);
        INFO(next.log_tail());
        REQUIRE(ready);
        CHECK(next.logs("stale_pin_removed").size() >= 1);
        check_still_serving(ports, https);
        CHECK(wait_for_counter(next, "routed", 1) == 1);
        stop_daemon(next);
    }
    CHECK(pinned_objects(pins).empty());
}

TEST_CASE("a client that half-closes right after its hello is served by the fallback plane",
          "[daemon]") {
    require_root();
    // The backend reads to the client's EOF, then answers: the half-close must travel.
    TcpBackend https(BackendScript::read_to_eof_then_reply("thanks", 256 * 1024));
    const SnikketPorts ports = ports_with_https_backend(https.port());
    auto daemon = start_daemon("sockmap", snikket_config(ports));

    // Hello, data and FIN all leave before the daemon has even routed the connection: the
    // client socket is no longer established when it would enter the sockhash.
    const std::string hello = make_client_hello({.server_name = "share.chat.example.com"});
    const std::string payload(100'000, 'p');
    constexpr int kClients = 5;
    for (int i = 0; i < kClients; ++i) {
        UniqueFd client = connect_to(ports.listen);
        write_all(client.get(), hello + payload);
        REQUIRE(::shutdown(client.get(), SHUT_WR) == 0);
        TransferOptions options;
        options.expect = kUntilEof;
        options.timeout = 10s;
        const TransferResult result = transfer_both_ways(client.get(), options);
        CHECK(result.eof);
        CHECK(result.received == std::string("thanks").size() + 256 * 1024);
        REQUIRE(https.wait_for_finished(static_cast<std::size_t>(i) + 1, 10s));
        CHECK(https.finished().back().received == hello.size() + payload.size());
    }
    // Each such pair is counted as a fallback, and logged (once a second at most, so the five
    // may share a line). The log writer gathers lines for 20 ms before it writes them: wait
    // for the first before counting.
    daemon->wait_for_log("sockmap_fallback");
    const auto lines = daemon->logs("sockmap_fallback").size();
    CHECK(lines >= 1);
    CHECK(wait_for_counter(*daemon, "sockmap_fallbacks", lines) >= lines);
    stop_daemon(*daemon);
}

TEST_CASE("auto takes sockmap where BPF loads and splice where it cannot, naming it once",
          "[daemon]") {
    require_root();
    TcpBackend https(BackendScript::exchange(64 * 1024));
    const SnikketPorts ports = ports_with_https_backend(https.port());
    struct Case {
        std::string pin_dir;
        std::string plane;
    };
    // A pin dir outside bpffs (and not /sys/fs/bpf, which the daemon would mount) leaves the
    // sockmap plane nowhere to pin its maps: auto must fall back, saying why.
    const std::string no_bpffs = "/tmp/splicer-test-no-bpffs-" + std::to_string(::getpid());
    const Case which = GENERATE_COPY(Case{unique_pin_dir(), "sockmap"}, Case{no_bpffs, "splice"});
    CAPTURE(which.pin_dir, which.plane);

    DaemonOptions options;
    options.binary = SPLICER_BINARY;
    options.config_text = snikket_config(ports);
    options.splice_mode = "auto";
    options.pin_dir = which.pin_dir;
    DaemonProcess daemon(options);
    const bool ready = daemon.wait_ready(15s);
    INFO(daemon.log_tail());
    REQUIRE(ready);
    const auto choices = daemon.logs("plane_choice");
    REQUIRE(choices.size() == 1);
    CHECK(choices.front().get("plane") == which.plane);
    if (which.plane == "splice") {
        CHECK_THAT(std::string(choices.front().get("error")), Catch::Contains("pin dir"));
    }
    const auto ready_line = daemon.wait_for_log("ready", {}, 1s);
    REQUIRE(ready_line.has_value());
    CHECK(ready_line->get("plane") == which.plane);
    check_still_serving(ports, https);
    const auto routed = daemon.wait_for_log("routed", {}, 2s);
    REQUIRE(routed.has_value());
    CHECK(routed->get("plane") == which.plane);
    stop_daemon(daemon);
    std::error_code ignored;
    std::filesystem::remove_all(no_bpffs, ignored);
}
