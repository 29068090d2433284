// SIGHUP reloads the configuration: new rules decide new connections, a connection already
// spliced keeps moving its bytes (256 MiB each way across the reload, byte-exact), and a
// broken file is refused with a log line while the rules in force stay. Port 80 routes reload
// the same way; its http section cannot come or go without a restart.

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <future>

#include "daemon_test_common.h"
#include "http_test_common.h"

using namespace splicer::test;
using splicer::UniqueFd;

namespace {

// The dropped daemon (not root any more) rereads the file: let it.
void make_readable(const std::filesystem::path& config) {
    namespace fs = std::filesystem;
    fs::permissions(config.parent_path(), fs::perms::owner_all | fs::perms::group_read |
                                              fs::perms::group_exec | fs::perms::others_read |
                                              fs::perms::others_exec);
    fs::permissions(config, fs::perms::owner_read | fs::perms::owner_write |
                                fs::perms::group_read | fs::perms::others_read);
}

void rewrite(const std::filesystem::path& config, const std::string& text) {
    std::ofstream(config, std::ios::trunc) << text;
}

// Sends SIGHUP and waits for the `event` it causes (reloaded or reload_failed).
std::optional<LogLine> reload(DaemonProcess& daemon, const std::string& event) {
    const std::size_t from = daemon.log_count();
    ::kill(daemon.pid(), SIGHUP);
    return daemon.wait_for_log(event, {}, 5s, from);
}

}  // namespace

TEST_CASE("SIGHUP: new rules for new connections, a spliced 256 MiB transfer goes on, "
          "a broken file keeps the old rules",
          "[daemon][reload]") {
    require_root();
    constexpr std::uint64_t kBytes = 256ULL << 20;
    TcpBackend old_https(BackendScript::exchange(kBytes, 31));
    TcpBackend new_https(BackendScript::exchange(64 * 1024, 32));
    TcpBackend unused(BackendScript::record());
    SnikketPorts ports{.listen = free_port(),
                       .xmpp_tls = unused.port(),
                       .https = old_https.port(),
                       .xmpp = unused.port()};
    auto daemon = start_daemon("sockmap", snikket_config(ports));
    make_readable(daemon->config_path());

    // The long transfer, started under the old rules.
    const std::string hello = make_client_hello({.server_name = "chat.example.com"});
    UniqueFd client = connect_and_send(ports.listen, hello, "");
    TransferOptions options;
    options.sent_before = hello;
    options.send = {"", kBytes, 33};
    options.expect = kUntilEof;
    options.timeout = 180s;
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
    rewrite(daemon->config_path(), snikket_config(moved));
    const auto reloaded = reload(*daemon, "reloaded");
    INFO(daemon->log_tail(20));
    REQUIRE(reloaded.has_value());
    // Still under way when the new rules took over.
    CHECK(old_https.finished().empty());
    check_still_serving(moved, new_https);
    CHECK(old_https.accepted() == 1);  // the new connection did not go to the old backend

    // A broken file: refused with its error, the rules in force stay.
    rewrite(daemon->config_path(),
            "listen: ( { host: \"127.0.0.1\"; port: \"" + std::to_string(ports.listen) +
                "\"; } );\nprotocols: ( { name: \"tls\"; host: \"127.0.0.1\"; port: \"99999\"; } );\n");
    const auto failed = reload(*daemon, "reload_failed");
    REQUIRE(failed.has_value());
    CHECK(failed->get("kept") == "old rules");
    check_still_serving(moved, new_https);

    // The transfer that began before both reloads ends byte-exact, each way.
    const TransferResult result = transfer.get();
    INFO("sent " << result.sent << " received " << result.received << " " << result.error);
    CHECK(result.complete(options));
    REQUIRE(old_https.wait_for_finished(1, 30s));
    const BackendConnection record = old_https.finished().front();
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
    make_readable(daemon->config_path());
    CHECK(http_exchange(site.listen, get_request("nobody.example.org", "/before")).status == 404);

    // A default route appears (a new route, so a new backend index) and takes unknown hosts.
    rewrite(daemon->config_path(), http_site_config(site, {.default_route = true}));
    const auto reloaded = reload(*daemon, "reloaded");
    INFO(daemon->log_tail(20));
    REQUIRE(reloaded.has_value());
    const HttpResponse after = http_exchange(site.listen, get_request("nobody.example.org", "/y"));
    CHECK(after.status == 200);
    CHECK(after.body == "fallback GET /y");

    // Without its http section the file would leave port 80 listening with no routes: refused,
    // and the routes in force keep serving.
    const std::string full = http_site_config(site, {.default_route = true});
    rewrite(daemon->config_path(), full.substr(0, full.find("http: {")));
    const auto refused = reload(*daemon, "reload_failed");
    REQUIRE(refused.has_value());
    CHECK(refused->get("error").find("http section") != std::string::npos);
    const HttpResponse kept = http_exchange(site.listen, get_request("nobody.example.org", "/z"));
    CHECK(kept.body == "fallback GET /z");
    check_http_still_serving(site);
    stop_daemon(*daemon);
}
