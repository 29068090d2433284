// `workers: 2` on a real daemon: connections land on both event loops, bytes stay exact on
// every plane, the limits are the daemon's (not each loop's), a SIGHUP reaches every worker
// before it is reported done, counters are summed, and SIGTERM stops every loop cleanly.

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "daemon_test_common.h"

using namespace splicer::test;
using splicer::UniqueFd;

namespace {

constexpr const char* kTwoWorkers = "workers: 2;\n";

// Waits until the daemon logged at least `count` closed lines.
bool wait_for_closed(const DaemonProcess& daemon, std::size_t count) {
    const auto deadline = Clock::now() + 15s;
    while (daemon.logs("closed").size() < count && Clock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
    }
    return daemon.logs("closed").size() >= count;
}

// True when the daemon closed (or reset) this client within `within`.
bool closed_by_daemon(const UniqueFd& client, std::chrono::milliseconds within) {
    pollfd waiting{.fd = client.get(), .events = POLLIN, .revents = 0};
    if (::poll(&waiting, 1, static_cast<int>(within.count())) <= 0) {
        return false;
    }
    char byte = 0;
    const ssize_t got = ::recv(client.get(), &byte, 1, MSG_DONTWAIT);
    return got == 0 || (got < 0 && errno == ECONNRESET);
}

// `count` silent clients from `source`, connected one after the other; how many of them the
// daemon closed at once (refused) and the ones it holds.
struct Outcome {
    std::vector<UniqueFd> held;
    int refused = 0;
};
Outcome connect_silent(const char* source, std::uint16_t port, int count) {
    Outcome outcome;
    for (int i = 0; i < count; ++i) {
        UniqueFd client = connect_from(source, port);
        if (closed_by_daemon(client, 300ms)) {
            ++outcome.refused;
        } else {
            outcome.held.push_back(std::move(client));
        }
    }
    return outcome;
}

struct LimitSetup {
    TcpBackend https{BackendScript::exchange(4096)};
    TcpBackend unused{BackendScript::record()};
    SnikketPorts ports;
    std::unique_ptr<DaemonProcess> daemon;

    // Two workers, a 10 s probe timeout (silent clients stay held, probing), and `limits`.
    explicit LimitSetup(const std::string& limits) {
        ports = {.listen = free_port(), .xmpp_tls = unused.port(), .https = https.port(),
                 .xmpp = unused.port()};
        daemon = start_daemon(
            "sockmap", kTwoWorkers + limits +
                           snikket_config(ports, {.probe_timeout_seconds = 10,
                                                  .on_timeout_xmpp = false}));
    }
};

void make_readable(const std::filesystem::path& config) {
    namespace fs = std::filesystem;
    fs::permissions(config.parent_path(), fs::perms::owner_all | fs::perms::group_read |
                                              fs::perms::group_exec | fs::perms::others_read |
                                              fs::perms::others_exec);
    fs::permissions(config, fs::perms::owner_read | fs::perms::owner_write |
                                fs::perms::group_read | fs::perms::others_read);
}

}  // namespace

TEST_CASE("workers 2: 200 connections land on both workers, byte-exact both ways, summed",
          "[daemon][workers]") {
    require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    constexpr std::size_t kConnections = 200;
    constexpr std::uint64_t kBytes = 256 * 1024;
    REQUIRE(raise_fd_limit(4 * kConnections + 256) >= 2 * kConnections + 64);
    TcpBackend https(BackendScript::exchange(kBytes, 77));
    TcpBackend unused(BackendScript::record());
    const SnikketPorts ports{.listen = free_port(),
                             .xmpp_tls = unused.port(),
                             .https = https.port(),
                             .xmpp = unused.port()};
    auto daemon = start_daemon(plane, std::string(kTwoWorkers) +
                                          "max_connections_per_client: 1000;\n" +
                                          snikket_config(ports));
    const auto ready = daemon->wait_for_log("ready", {}, 1s);
    REQUIRE(ready.has_value());
    CHECK(ready->get("workers") == "2");

    const std::string hello = make_client_hello({.server_name = "chat.example.com"});
    std::vector<UniqueFd> clients;
    std::vector<int> fds;
    std::vector<TransferOptions> options(kConnections);
    for (std::size_t i = 0; i < kConnections; ++i) {
        clients.push_back(connect_and_send(ports.listen, hello, ""));
        fds.push_back(clients.back().get());
        options[i].sent_before = hello;
        options[i].send = {"", kBytes, 1000 + i};
        options[i].expect = kUntilEof;
    }
    const auto results = transfer_many(fds, options, 120s);
    const bool all_finished = https.wait_for_finished(kConnections, 30s);
    std::size_t complete = 0;
    for (std::size_t i = 0; i < kConnections; ++i) {
        complete += results[i].complete(options[i]) ? 1 : 0;
    }
    INFO(daemon->log_tail(20));
    CHECK(complete == kConnections);
    CHECK(all_finished);
    const StreamHashes client = client_hashes(results);
    const StreamHashes backend = backend_hashes(https);
    CHECK(client.sent == backend.received);
    CHECK(client.received == backend.sent);

    clients.clear();
    REQUIRE(wait_for_closed(*daemon, kConnections));
    const auto per_worker = closed_per_worker(*daemon);
    INFO("closed per worker: 0=" << (per_worker.count("0") ? per_worker.at("0") : 0)
                                 << " 1=" << (per_worker.count("1") ? per_worker.at("1") : 0));
    CHECK(per_worker.size() == 2);  // worker 0 and worker 1, no other value
    CHECK(per_worker.count("0") == 1);
    CHECK(per_worker.count("1") == 1);
    // Connection ids stay unique across workers.
    std::set<std::string> ids;
    for (const LogLine& line : daemon->logs("closed")) {
        ids.insert(std::string(line.get("conn")));
    }
    CHECK(ids.size() == daemon->logs("closed").size());
    // `splicer stats` reads the sum over both workers.
    // Each worker's snapshot holds its accepted, closed and active counts of one moment: once
    // both have published every close, active is their sum at that moment.
    CHECK(wait_for_counter(*daemon, "closed", kConnections) == kConnections);
    CHECK(daemon_counter(*daemon, "accepted") == kConnections);
    CHECK(daemon_counter(*daemon, "active") == 0);

    stop_daemon(*daemon);
    const auto stopped = daemon->wait_for_log("stopped", {}, 1s);
    REQUIRE(stopped.has_value());
    CHECK(stopped->get("workers") == "2");
    CHECK(stopped->number("accepted") == kConnections);
}

TEST_CASE("workers 2: max_connections holds across workers, exactly max held",
          "[daemon][workers][limits]") {
    require_root();
    LimitSetup setup("max_connections: 6;\nmax_connections_per_client: 100;\n");
    Outcome outcome = connect_silent("127.0.0.1", setup.ports.listen, 26);
    INFO(setup.daemon->log_tail(20));
    CHECK(outcome.held.size() == 6);
    CHECK(outcome.refused == 20);
    for (const UniqueFd& client : outcome.held) {
        CHECK_FALSE(closed_by_daemon(client, 10ms));  // never dropped to make room
    }
    std::this_thread::sleep_for(1500ms);
    CHECK(daemon_counter(*setup.daemon, "refused") == 20);
    CHECK(daemon_counter(*setup.daemon, "active") == 6);
    // Room again once some leave.
    outcome.held.resize(3);
    std::this_thread::sleep_for(300ms);
    check_still_serving(setup.ports, setup.https);
    stop_daemon(*setup.daemon);
}

TEST_CASE("workers 2: the per-client limit counts a client's connections on every worker",
          "[daemon][workers][limits]") {
    require_root();
    // max_connections 8, per client 2: four light clients make the pressure (4 of 8 held),
    // under which a fifth client gets 2 connections, whichever workers they land on.
    LimitSetup setup("max_connections: 8;\nmax_connections_per_client: 2;\n");
    std::vector<UniqueFd> others;
    for (const char* source : {"127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"}) {
        Outcome one = connect_silent(source, setup.ports.listen, 1);
        REQUIRE(one.held.size() == 1);
        others.push_back(std::move(one.held.front()));
    }
    Outcome heavy = connect_silent("127.0.0.2", setup.ports.listen, 12);
    INFO(setup.daemon->log_tail(20));
    CHECK(heavy.held.size() == 2);
    CHECK(heavy.refused == 10);
    CHECK(wait_for_counter(*setup.daemon, "refused_per_client", 10) == 10);
    stop_daemon(*setup.daemon);
}

TEST_CASE("workers 2: after SIGHUP's reloaded line, 100 new connections all follow the new rule",
          "[daemon][workers][reload]") {
    require_root();
    TcpBackend old_https(BackendScript::exchange(4096, 5));
    TcpBackend new_https(BackendScript::exchange(4096, 6));
    TcpBackend unused(BackendScript::record());
    const SnikketPorts ports{.listen = free_port(),
                             .xmpp_tls = unused.port(),
                             .https = old_https.port(),
                             .xmpp = unused.port()};
    auto daemon = start_daemon("sockmap", std::string(kTwoWorkers) + snikket_config(ports));
    make_readable(daemon->config_path());
    check_still_serving(ports, old_https);

    SnikketPorts moved = ports;
    moved.https = new_https.port();
    std::ofstream(daemon->config_path(), std::ios::trunc)
        << std::string(kTwoWorkers) + snikket_config(moved);
    const std::size_t from = daemon->log_count();
    ::kill(daemon->pid(), SIGHUP);
    const auto reloaded = daemon->wait_for_log("reloaded", {}, 5s, from);
    INFO(daemon->log_tail(20));
    REQUIRE(reloaded.has_value());
    CHECK(reloaded->get("workers") == "2");
    // One reloaded line, from the last worker to apply it: not one per worker.
    std::this_thread::sleep_for(200ms);
    CHECK(daemon->logs("reloaded").size() == 1);

    const std::size_t closed_before = daemon->logs("closed").size();
    for (int i = 0; i < 100; ++i) {
        check_still_serving(moved, new_https);
    }
    CHECK(old_https.accepted() == 1);  // only the connection before the reload
    CHECK(new_https.accepted() == 100);
    REQUIRE(wait_for_closed(*daemon, closed_before + 100));
    const auto per_worker = closed_per_worker(*daemon, closed_before);
    // Both workers served some of the 100 (and so both had the new rules).
    CHECK(per_worker.count("0") == 1);
    CHECK(per_worker.count("1") == 1);
    std::this_thread::sleep_for(1500ms);
    CHECK(daemon_counter(*daemon, "reloads_ok") == 1);
    stop_daemon(*daemon);
}
