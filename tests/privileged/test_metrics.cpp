// The Prometheus endpoint and `splicer stats --json`, scraped with real clients (curl, jq)
// after known traffic on every plane: bytes equal to what was sent each way (sockmap: the
// verdict's kernel counters), routed and refused connections under their labels, a probe
// timeout and its backend failure, an HTTP status; and a scraper that never sends or never
// reads holds up neither a spliced transfer nor the next scrape for long.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "daemon_test_common.h"
#include "support/client_hello.h"
#include "support/command.h"
#include "support/metrics_scrape.h"
#include "support/raw_client.h"
#include "support/sockets.h"

using namespace splicer::test;
using splicer::UniqueFd;

namespace {

// `splicer stats --json` turned by jq into the same "name{labels} value" lines.
std::map<std::string, std::uint64_t> stats_json(const DaemonProcess& daemon) {
    const std::string jq =
        R"jq(to_entries[] | select(.key != "kernel") | .key as $k | if (.value | type) == "number")jq"
        R"jq( then "\($k) \(.value)" else .value[] | "\($k){\(to_entries | map(select(.key != "value")))jq"
        R"jq( | map("\(.key)=\"\(.value)\"") | join(","))} \(.value)" end)jq";
    const auto result = run_command(std::string(SPLICER_BINARY) + " stats --json --pin-dir " +
                                    daemon.pin_dir() + " | jq -r '" + jq + "'");
    CAPTURE(result.output);
    REQUIRE(result.exit_code == 0);
    return metric_samples(result.output);
}

std::uint64_t jq_number(const DaemonProcess& daemon, const std::string& filter) {
    const auto result = run_command(std::string(SPLICER_BINARY) + " stats --json --pin-dir " +
                                    daemon.pin_dir() + " | jq -r '" + filter + "'");
    CAPTURE(filter, result.output);
    REQUIRE(result.exit_code == 0);
    return std::stoull(result.output);
}

// "name: a vs b" for every sample the two sides do not agree on.
std::string differences(const std::map<std::string, std::uint64_t>& a,
                        const std::map<std::string, std::uint64_t>& b) {
    std::string out;
    for (const auto& [name, value] : a) {
        const auto other = b.find(name);
        if (other == b.end() || other->second != value) {
            out += name + ": " + std::to_string(value) + " vs " +
                   (other == b.end() ? std::string("absent") : std::to_string(other->second)) +
                   "\n";
        }
    }
    for (const auto& [name, value] : b) {
        if (a.find(name) == a.end()) {
            out += name + ": absent vs " + std::to_string(value) + "\n";
        }
    }
    return out;
}

std::string metrics_section(std::uint16_t port) {
    return "metrics: { host: \"127.0.0.1\"; port: " + std::to_string(port) + "; };\n";
}

}  // namespace

TEST_CASE("metrics: a scrape after known traffic counts it on every plane, as stats --json does",
          "[daemon][metrics]") {
    require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    constexpr std::uint64_t kSent = 300'000;
    constexpr std::uint64_t kReply = 700'000;
    TcpBackend https(BackendScript::exchange(kReply, 31));
    SnikketPorts ports = unserved_snikket_ports();  // xmpp: nobody listens (refused)
    ports.https = https.port();
    const std::uint16_t metrics_port = free_port();
    const std::uint16_t http_port = free_port();
    const std::string config =
        snikket_config(ports) + "max_probing: 1;\n" + metrics_section(metrics_port) +
        "http: { listen: ( { host: \"127.0.0.1\"; port: \"" + std::to_string(http_port) +
        "\"; } ); routes: ( { hosts: [\"known.example\"]; backend: \"127.0.0.1:" +
        std::to_string(free_port()) + "\"; } ); };\n";
    auto daemon = start_daemon(plane, config);

    // 1. Known bytes each way through the HTTPS rule.
    const std::string hello = make_client_hello({.server_name = "chat.example.com"});
    {
        UniqueFd client = connect_to(ports.listen);
        TransferOptions options;
        options.send = Outgoing{hello, kSent, 4242};
        options.expect = kReply;
        options.timeout = 20s;
        const TransferResult result = transfer_both_ways(client.get(), options);
        INFO(describe_stream(result));
        REQUIRE(result.complete(options));
        REQUIRE(https.wait_for_finished(1, 10s));
    }
    const std::uint64_t sent = hello.size() + kSent;

    // 2. A silent client holds the only probing place: the next one is refused under
    // max_probing; the silent one reaches its probe timeout, goes to the xmpp rule (on-timeout)
    // whose backend refuses: a backend failure of that rule.
    UniqueFd silent = connect_to(ports.listen);
    std::this_thread::sleep_for(200ms);  // accepted and probing (no log line says so)
    UniqueFd refused = connect_to(ports.listen);
    CHECK(wait_for_close(refused.get(), 3s) != "open");
    REQUIRE(daemon->wait_for_log("backend_failed", {}, 5s).has_value());

    // 3. Port 80: a host no route has gets 404; curl says how many bytes it read.
    const auto curl = run_command(
        "curl -sS -m 5 -o /dev/null -w '%{http_code} %{size_header} "
        "%{size_download}' -H 'Host: nowhere.example' http://127.0.0.1:" +
        std::to_string(http_port) + "/");
    CAPTURE(curl.output);
    REQUIRE(curl.exit_code == 0);
    std::istringstream curl_fields(curl.output);
    int code = 0;
    std::uint64_t header_bytes = 0;
    std::uint64_t body_bytes = 0;
    curl_fields >> code >> header_bytes >> body_bytes;
    REQUIRE(code == 404);

    // 4. A reload of a broken file, then of the good one again. (The file itself stays
    // root-only: the privileged helper reads it for the dropped daemon.)
    const std::string good = read_file(daemon->config_path());
    daemon->rewrite_config("listen: ( { host: ; } );\n");
    REQUIRE(::kill(daemon->pid(), SIGHUP) == 0);
    REQUIRE(daemon->wait_for_log("reload_failed", {}, 5s).has_value());
    daemon->rewrite_config(good);
    REQUIRE(::kill(daemon->pid(), SIGHUP) == 0);
    REQUIRE(daemon->wait_for_log("reloaded", {}, 5s).has_value());

    // The daemon hands its counters over once a second: scrape until they settle.
    const std::string bytes_up =
        "splicer_bytes_total{direction=\"client_to_backend\",plane=\"" + plane + "\"}";
    const std::string bytes_down =
        "splicer_bytes_total{direction=\"backend_to_client\",plane=\"" + plane + "\"}";
    std::map<std::string, std::uint64_t> samples;
    const auto deadline = Clock::now() + 10s;
    do {
        std::this_thread::sleep_for(300ms);
        samples = scrape_metrics(metrics_port);
    } while (Clock::now() < deadline &&
             (samples[bytes_up] != sent || samples[bytes_down] != kReply ||
              samples["splicer_connections_active"] != 0 ||
              samples["splicer_reloads_total{result=\"ok\"}"] != 1 ||
              samples["splicer_http_requests_total{code=\"404\"}"] != 1));
    std::ostringstream all;
    for (const auto& [name, value] : samples) {
        all << name << ' ' << value << '\n';
    }
    INFO("scraped:\n" << all.str() << "daemon log:\n" << daemon->log_tail(30));
    const std::string https_rule = "tls -> 127.0.0.1:" + std::to_string(https.port());
    const std::string xmpp_rule = "xmpp -> 127.0.0.1:" + std::to_string(ports.xmpp);
    CHECK(samples[bytes_up] == sent);
    CHECK(samples[bytes_down] == kReply);
    CHECK(samples["splicer_connections_accepted_total"] == 3);  // https, silent, curl
    CHECK(samples["splicer_connections_refused_total{limit=\"max_probing\"}"] == 1);
    CHECK(samples["splicer_connections_refused_total{limit=\"max_connections\"}"] == 0);
    CHECK(samples["splicer_connections_routed_total{rule=\"" + https_rule +
                  "\",protocol=\"tls\",plane=\"" + plane + "\"}"] == 1);
    CHECK(samples["splicer_connections_routed_total{rule=\"" + xmpp_rule +
                  "\",protocol=\"xmpp\",plane=\"" + plane + "\"}"] == 1);
    CHECK(samples["splicer_backend_failures_total{rule=\"" + xmpp_rule + "\"}"] == 1);
    CHECK(samples["splicer_backend_failures_total{rule=\"" + https_rule + "\"}"] == 0);
    CHECK(samples["splicer_probe_timeouts_total"] == 1);
    CHECK(samples["splicer_connections_active"] == 0);
    CHECK(samples["splicer_http_requests_total{code=\"404\"}"] == 1);
    CHECK(samples["splicer_bytes_total{direction=\"backend_to_client\",plane=\"http\"}"] ==
          header_bytes + body_bytes);
    CHECK(samples["splicer_sockmap_fallbacks_total"] == 0);
    CHECK(samples["splicer_reloads_total{result=\"ok\"}"] == 1);
    CHECK(samples["splicer_reloads_total{result=\"failed\"}"] == 1);
    CHECK(samples["splicer_build_info{version=\"" SPLICER_VERSION "\",plane=\"" + plane + "\"}"] ==
          1);

    // stats --json, read from the pinned map: the very same series and values.
    const auto json = stats_json(*daemon);
    CHECK(differences(samples, json).empty());
    CHECK(json.size() == samples.size());
    if (plane == "sockmap") {
        // The kernel's own counters are what the sockmap bytes are made of.
        CHECK(jq_number(*daemon,
                        ".kernel.client_to_backend.redirected_bytes + "
                        ".kernel.client_to_backend.passed_bytes") == sent);
    } else {
        CHECK(run_command(std::string(SPLICER_BINARY) + " stats --json --pin-dir " +
                          daemon->pin_dir() + " | jq -e '.kernel == null'")
                  .exit_code == 0);
    }
    stop_daemon(*daemon);
}

TEST_CASE(
    "metrics: scrapers that never send or never read hold up neither a spliced transfer "
    "nor the next scrape for long",
    "[daemon][metrics]") {
    require_root();
    constexpr std::uint64_t kBytes = 32ULL * 1024 * 1024;
    TcpBackend https(BackendScript::exchange(kBytes, 32));
    SnikketPorts ports = unserved_snikket_ports();
    ports.https = https.port();
    const std::uint16_t metrics_port = free_port();
    auto daemon = start_daemon("splice", snikket_config(ports) + metrics_section(metrics_port));

    // One scraper connects and says nothing; another asks, with the smallest receive buffer,
    // and never reads the answer.
    UniqueFd silent = connect_to(metrics_port);
    UniqueFd deaf(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const int tiny = 1;
    ::setsockopt(deaf.get(), SOL_SOCKET, SO_RCVBUF, &tiny, sizeof(tiny));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(metrics_port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(deaf.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) ==
            0);
    const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    REQUIRE(::send(deaf.get(), request.data(), request.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(request.size()));

    // Meanwhile 32 MiB each way through the splice plane, with scrapes queued behind them.
    const std::string hello = make_client_hello({.server_name = "chat.example.com"});
    UniqueFd client = connect_to(ports.listen);
    TransferOptions options;
    options.send = Outgoing{hello, kBytes, 77};
    options.expect = kBytes;
    options.timeout = 60s;
    std::uint64_t scrape_ms = 0;
    std::thread scraper([&] {
        const auto started = Clock::now();
        const auto result = run_command(
            "curl -sS -m 10 -o /dev/null -w '%{http_code}' "
            "http://127.0.0.1:" +
            std::to_string(metrics_port) + "/metrics");
        scrape_ms = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count());
        CHECK(result.output == "200");
    });
    const auto started = Clock::now();
    const TransferResult result = transfer_both_ways(client.get(), options);
    const auto transfer_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    scraper.join();
    INFO(describe_stream(result) << "; transfer " << transfer_ms << " ms, scrape " << scrape_ms
                                 << " ms");
    WARN("32 MiB each way through splice in " << transfer_ms
                                              << " ms; the scrape queued "
                                                 "behind two stalled scrapers answered in "
                                              << scrape_ms << " ms");
    CHECK(result.complete(options));
    REQUIRE(https.wait_for_finished(1, 10s));
    CHECK(https.finished().back().received_sha256 == result.sent_sha256);
    // Served one at a time, each bounded by kScrapeDeadline (2 s): the queued scrape waits
    // for the two stalled ones at most, plus a loaded machine's slack.
    CHECK(scrape_ms < 6000);
    // The silent scraper was dropped at its deadline, not held.
    CHECK(wait_for_close(silent.get(), 5s) != "open");
    stop_daemon(*daemon);
}
