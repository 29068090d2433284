// SIGHUP reloads the configuration: new rules decide new connections, a connection already
// spliced keeps moving its bytes (256 MiB each way across the reload, byte-exact), and a
// broken file is refused with a log line while the rules in force stay. Port 80 routes reload
// the same way; its http section cannot come or go without a restart.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <filesystem>
#include <fstream>
#include <future>

#include "daemon_test_common.h"
#include "http_test_common.h"
#include "support/daemon_reload.h"
#include "support/file_modes.h"

using namespace splicer::test;
using splicer::UniqueFd;

namespace {

// Sends SIGHUP and waits for its outcome: the line when it is `event` (reloaded or
// reload_failed), nullopt when the other came (its error shown) or neither within 5 s.
std::optional<LogLine> reload(const DaemonProcess& daemon, std::string_view event) {
    std::optional<LogLine> outcome = reload_daemon(daemon, 5s);
    if (outcome && outcome->event() != event) {
        UNSCOPED_INFO("the reload ended " << outcome->event() << ": " << outcome->get("error"));
        return std::nullopt;
    }
    return outcome;
}

// A DNS server that never answers: a UDP socket on ADDRESS:53 that nobody reads. (With no
// socket there the resolver would get a port unreachable and give up at once.)
UniqueFd silent_dns_server(const char* address) {
    UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd);
    sockaddr_in where{};
    where.sin_family = AF_INET;
    where.sin_port = htons(53);
    REQUIRE(::inet_pton(AF_INET, address, &where.sin_addr) == 1);
    REQUIRE(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&where), sizeof(where)) == 0);
    return fd;
}

}  // namespace

TEST_CASE("SIGHUP: a reload waiting on a silent DNS server does not stall the daemon",
          "[daemon][reload]") {
    require_root();
    TcpBackend https(BackendScript::exchange(64 * 1024, 5));
    TcpBackend unused(BackendScript::record());
    const SnikketPorts ports{.listen = free_port(),
                             .xmpp_tls = unused.port(),
                             .https = https.port(),
                             .xmpp = unused.port()};
    const UniqueFd dns = silent_dns_server("127.0.0.77");
    // The daemon gets a resolv.conf of its own (a private mount namespace, bind mount)
    // naming that server, with a 3 s timeout.
    const TempDir dir("splicer-dns");
    std::filesystem::permissions(dir.path(), std::filesystem::perms::owner_all |
                                                 std::filesystem::perms::others_read |
                                                 std::filesystem::perms::others_exec);
    const auto resolv =
        dir.write_file("resolv.conf", "nameserver 127.0.0.77\noptions timeout:3 attempts:1\n");
    std::filesystem::permissions(resolv, std::filesystem::perms::owner_read |
                                             std::filesystem::perms::others_read);
    const auto wrapper = dir.write_file(
        "with-silent-dns",
        "#!/bin/bash\nexec unshare --mount --propagation private /bin/bash -c "
        "'mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"' " +
            resolv.string() + " " + SPLICER_BINARY + " \"$@\"\n");
    std::filesystem::permissions(wrapper, std::filesystem::perms::owner_all);
    DaemonOptions options;
    options.binary = wrapper.string();
    options.config_text = snikket_config(ports);
    options.splice_mode = "splice";
    DaemonProcess daemon(options);
    INFO(daemon.log_tail());
    REQUIRE(daemon.wait_ready(15s));
    make_readable_by_all(daemon.config_path());

    // The new file names a backend only DNS can answer for (.test is reserved: no answer
    // exists anywhere; here none even comes).
    std::string text = snikket_config(ports);
    const std::string literal = "host: \"127.0.0.1\"; port: \"" + std::to_string(ports.xmpp);
    const auto at = text.find(literal);
    REQUIRE(at != std::string::npos);
    text.replace(at, literal.size(),
                 "host: \"xmpp-backend.test\"; port: \"" + std::to_string(ports.xmpp));
    daemon.rewrite_config(text);

    const std::size_t from = daemon.log_count();
    const auto sighup_at = Clock::now();
    ::kill(daemon.pid(), SIGHUP);
    // While the resolver waits, connections come and go as before, each promptly.
    int served = 0;
    auto slowest = Clock::duration::zero();
    while (Clock::now() - sighup_at < 2s) {
        const auto started = Clock::now();
        check_still_serving(ports, https);
        slowest = std::max(slowest, Clock::now() - started);
        ++served;
    }
    const auto failed = daemon.wait_for_log("reload_failed", {}, 20s, from);
    const auto waited = Clock::now() - sighup_at;
    REQUIRE(failed.has_value());
    CHECK_THAT(std::string(failed->get("error")), Catch::Contains("xmpp-backend.test"));
    const auto slowest_ms = std::chrono::duration_cast<std::chrono::milliseconds>(slowest);
    const auto waited_ms = std::chrono::duration_cast<std::chrono::milliseconds>(waited);
    CAPTURE(served, slowest_ms.count(), waited_ms.count());
    // The resolver really waited (else this test shows nothing)...
    CHECK(waited >= 2500ms);
    // ...and the loop did not: every round trip meanwhile was quick.
    CHECK(served >= 2);
    CHECK(slowest < 1s);
    // The old rules stay, and a later SIGHUP still works.
    check_still_serving(ports, https);
    daemon.rewrite_config(snikket_config(ports));
    CHECK(reload(daemon, "reloaded").has_value());
    stop_daemon(daemon);
}

TEST_CASE("SIGHUP: new rules for new connections, a spliced 256 MiB transfer goes on, "
          "a broken file keeps the old rules",
          "[daemon][reload]") {
    require_root();
    constexpr std::uint64_t kBytes = 256ULL << 20;
    // One bound for both ends of the transfer. The backend's own default (60 s) was shorter
    // than the client's: on a loaded machine the transfer outlasted it, the backend gave up
    // and closed mid-stream (the daemon logged end=backend_reset), and the test reported the
    // bytes it never read as missing.
    constexpr auto kTransferTimeout = 180s;
    const std::string hello = make_client_hello({.server_name = "chat.example.com"});
    BackendScript old_script = BackendScript::exchange(kBytes, 31);
    old_script.verify = Outgoing{hello, kBytes, 33};
    old_script.timeout = kTransferTimeout;
    TcpBackend old_https(old_script);
    TcpBackend new_https(BackendScript::exchange(64 * 1024, 32));
    TcpBackend unused(BackendScript::record());
    SnikketPorts ports{.listen = free_port(),
                       .xmpp_tls = unused.port(),
                       .https = old_https.port(),
                       .xmpp = unused.port()};
    auto daemon = start_daemon("sockmap", snikket_config(ports));
    make_readable_by_all(daemon->config_path());

    // The long transfer, started under the old rules.
    UniqueFd client = connect_and_send(ports.listen, hello, "");
    TransferOptions options;
    options.sent_before = hello;
    options.send = {"", kBytes, 33};
    options.expect = kUntilEof;
    options.timeout = kTransferTimeout;
    const Outgoing reply{"", kBytes, 31};  // the old backend's first connection
    options.verify = &reply;
    auto transfer = std::async(std::launch::async,
                               [&] { return transfer_both_ways(client.get(), options); });
    const auto deadline = Clock::now() + 30s;
    while (old_https.live_received() < (16ULL << 20) && Clock::now() < deadline) {
        std::this_thread::sleep_for(5ms);
    }
    REQUIRE(old_https.live_received() >= (16ULL << 20));

    // Reload: the HTTPS rule now leads to the new backend.
    SnikketPorts moved = ports;
    moved.https = new_https.port();
    daemon->rewrite_config(snikket_config(moved));
    const auto reloaded = reload(*daemon, "reloaded");
    INFO(daemon->log_tail(20));
    REQUIRE(reloaded.has_value());
    // Still under way when the new rules took over.
    CHECK(old_https.finished().empty());
    check_still_serving(moved, new_https);
    CHECK(old_https.accepted() == 1);  // the new connection did not go to the old backend

    // A broken file: refused with its error, the rules in force stay.
    daemon->rewrite_config("listen: ( { host: \"127.0.0.1\"; port: \"" +
                           std::to_string(ports.listen) +
                           "\"; } );\nprotocols: ( { name: \"tls\"; host: \"127.0.0.1\"; "
                           "port: \"99999\"; } );\n");
    const auto failed = reload(*daemon, "reload_failed");
    REQUIRE(failed.has_value());
    CHECK(failed->get("kept") == "old rules");
    check_still_serving(moved, new_https);

    // The transfer that began before both reloads ends byte-exact, each way.
    const TransferResult result = transfer.get();
    INFO("client: " << describe_stream(result));
    const bool finished = old_https.wait_for_finished(1, 30s);
    INFO("daemon stats:\n" << daemon_stats(*daemon) << "daemon log:\n" << daemon->log_tail(30));
    CHECK(result.complete(options));
    REQUIRE(finished);
    const BackendConnection record = old_https.finished().front();
    INFO("backend: " << describe_stream(record));
    CHECK_FALSE(record.timed_out);  // a harness bound, not the daemon, ended the transfer
    CHECK(record.received == hello.size() + kBytes);
    CHECK(record.received_sha256 == result.sent_sha256);
    CHECK(result.received == kBytes);
    CHECK(result.received_sha256 == record.sent_sha256);
    client.reset();
    stop_daemon(*daemon);
}

TEST_CASE("SIGHUP: port 80 routes reload, dropping the http section is refused", "[http][reload]") {
    HttpSite site;
    auto daemon = start_http_daemon(site);
    make_readable_by_all(daemon->config_path());
    CHECK(http_exchange(site.listen, get_request("nobody.example.org", "/before")).status == 404);

    // A default route appears (a new route, so a new backend index) and takes unknown hosts.
    daemon->rewrite_config(http_site_config(site, {.default_route = true}));
    const auto reloaded = reload(*daemon, "reloaded");
    INFO(daemon->log_tail(20));
    REQUIRE(reloaded.has_value());
    const HttpResponse after = http_exchange(site.listen, get_request("nobody.example.org", "/y"));
    CHECK(after.status == 200);
    CHECK(after.body == "fallback GET /y");

    // Without its http section the file would leave port 80 listening with no routes: refused,
    // and the routes in force keep serving.
    const std::string full = http_site_config(site, {.default_route = true});
    daemon->rewrite_config(full.substr(0, full.find("http: {")));
    const auto refused = reload(*daemon, "reload_failed");
    REQUIRE(refused.has_value());
    CHECK(refused->get("error").find("http section") != std::string::npos);
    const HttpResponse kept = http_exchange(site.listen, get_request("nobody.example.org", "/z"));
    CHECK(kept.body == "fallback GET /z");
    check_http_still_serving(site);
    stop_daemon(*daemon);
}
