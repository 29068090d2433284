// Limits as pure logic: the fd budget for max_connections and the once-per-interval gate that
// keeps a flood of refusals from becoming a flood of log lines.

#include <arpa/inet.h>
#include <netinet/in.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "limits/admission.h"
#include "limits/fd_limit.h"
#include "log/interval_gate.h"
#include "net/address.h"

using namespace std::chrono_literals;
using splicer::log::IntervalGate;

TEST_CASE("fds_needed: two per socket pair and two per pipe", "[limits]") {
    CHECK(splicer::limits::fds_needed(0, 0) == splicer::limits::kFixedFds);
    CHECK(splicer::limits::fds_needed(1000, 0) == 256 + 2000);
    CHECK(splicer::limits::fds_needed(1000, 250) == 256 + 2000 + 500);
    CHECK(splicer::limits::fds_needed(1'000'000, 250'000) == 256 + 2'000'000 + 500'000);
}

TEST_CASE("default_pipes: a quarter of max_connections, at least 16 or one per direction",
          "[limits]") {
    using splicer::limits::default_pipes;
    CHECK(default_pipes(16384) == 4096);
    CHECK(default_pipes(1001) == 251);  // rounded up
    CHECK(default_pipes(100) == 25);
    CHECK(default_pipes(40) == 16);
    CHECK(default_pipes(5) == 10);  // two directions each
    CHECK(default_pipes(1) == 2);
}

TEST_CASE("IntervalGate: the first event logs, the rest of the interval is folded in",
          "[limits][log]") {
    IntervalGate gate(1s);
    const auto start = IntervalGate::Clock::time_point{} + 100s;
    CHECK(gate.pass(start) == std::optional<std::uint64_t>(1));
    for (int i = 1; i < 1000; ++i) {
        CHECK_FALSE(gate.pass(start + std::chrono::microseconds(i * 900)).has_value());
    }
    // The next line, one interval later, reports everything folded since the last one.
    CHECK(gate.pass(start + 1s) == std::optional<std::uint64_t>(1000));
    CHECK_FALSE(gate.pass(start + 1500ms).has_value());
    CHECK(gate.pass(start + 10s) == std::optional<std::uint64_t>(2));
}

namespace {

splicer::config::Config limits_config() {
    splicer::config::Config config;
    config.listeners.resize(2);
    config.listeners[0].max_connections = 3;  // listener 1: no limit of its own
    config.max_connections_per_client = 2;
    config.max_probing = 4;
    return config;
}

}  // namespace

TEST_CASE("Admission: per listener, per client and probing limits, each refusing the newest",
          "[limits]") {
    using splicer::limits::Refusal;
    splicer::limits::Admission admission(limits_config(), 100);
    CHECK(admission.admit(0, "a") == Refusal::none);
    CHECK(admission.admit(0, "a") == Refusal::none);
    CHECK(admission.admit(0, "a") == Refusal::client_full);  // nothing counted for it
    CHECK(admission.from_client("a") == 2);
    CHECK(admission.admit(0, "b") == Refusal::none);
    CHECK(admission.admit(0, "c") == Refusal::listener_full);
    CHECK(admission.on_listener(0) == 3);
    CHECK(admission.admit(1, "c") == Refusal::none);  // another listener still accepts
    CHECK(admission.probing() == 4);
    CHECK(admission.admit(1, "d") == Refusal::probing_full);
    // A routed connection stops counting as probing, but still counts for its client.
    admission.end_probing();
    CHECK(admission.admit(1, "d") == Refusal::none);
    CHECK(admission.admit(1, "a") == Refusal::client_full);
    admission.release(0, "a");
    CHECK(admission.from_client("a") == 1);
    CHECK(admission.on_listener(0) == 2);
    admission.end_probing();
    CHECK(admission.admit(1, "a") == Refusal::none);
    CHECK(to_string(Refusal::probing_full) == "max_probing");
    CHECK(to_string(Refusal::all_full) == "max_connections");
}

TEST_CASE("Admission: http listeners come after the 443 ones, each with its own limit, "
          "outside max_probing",
          "[limits]") {
    using splicer::limits::Refusal;
    splicer::config::Config config;
    config.listeners.resize(1);  // listener 0: no limit
    config.max_probing = 1;
    config.http.emplace();
    config.http->listeners.resize(2);
    config.http->listeners[0].max_connections = 1;  // listener 1
    splicer::limits::Admission admission(config, 100);
    CHECK(admission.probes(0));
    CHECK_FALSE(admission.probes(1));
    CHECK_FALSE(admission.probes(2));
    CHECK(admission.admit(1, "a") == Refusal::none);
    CHECK(admission.admit(1, "b") == Refusal::listener_full);
    CHECK(admission.probing() == 0);  // port 80 connections are not probing
    CHECK(admission.admit(0, "b") == Refusal::none);
    CHECK(admission.admit(0, "c") == Refusal::probing_full);
    // Probing is full, yet port 80 still admits: a flood on 443 cannot refuse it.
    CHECK(admission.admit(2, "c") == Refusal::none);  // the second http listener: unlimited
    CHECK(admission.admit(2, "d") == Refusal::none);
    CHECK(admission.on_listener(1) == 1);
    admission.release(1, "a");
    CHECK(admission.admit(1, "b") == Refusal::none);
}

TEST_CASE("host_key: the port is left out, IPv4-mapped IPv6 is the IPv4 address", "[limits]") {
    // An IPv4 or IPv6 literal and a port as a SocketAddress.
    const auto address = [](const char* text, std::uint16_t port) {
        splicer::net::SocketAddress out;
        auto* in4 = reinterpret_cast<sockaddr_in*>(&out.storage);
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
        if (::inet_pton(AF_INET, text, &in4->sin_addr) == 1) {
            in4->sin_family = AF_INET;
            in4->sin_port = htons(port);
        } else {
            REQUIRE(::inet_pton(AF_INET6, text, &in6->sin6_addr) == 1);
            in6->sin6_family = AF_INET6;
            in6->sin6_port = htons(port);
        }
        return out;
    };
    const auto v4 = address;
    const auto v6 = address;
    using splicer::net::host_key;
    CHECK(host_key(v4("198.18.0.1", 1000)) == host_key(v4("198.18.0.1", 2000)));
    CHECK(host_key(v4("198.18.0.1", 1000)) != host_key(v4("198.18.0.2", 1000)));
    CHECK(host_key(v6("::ffff:198.18.0.1", 5)) == host_key(v4("198.18.0.1", 6)));
    CHECK(host_key(v6("2001:db8::1", 5)) == host_key(v6("2001:db8::1", 7)));
    // By default an IPv6 client is its /64: one host's SLAAC prefix.
    CHECK(host_key(v6("2001:db8::1", 5)) == host_key(v6("2001:db8::2", 5)));
    CHECK(host_key(v6("2001:db8::1", 5)) == host_key(v6("2001:db8::ffff:ffff:ffff:ffff", 5)));
    CHECK(host_key(v6("2001:db8::1", 5)) != host_key(v6("2001:db8:0:1::1", 5)));
    CHECK(host_key(v6("::ffff:198.18.0.1", 5)) != host_key(v6("::1", 5)));
}

TEST_CASE("host_key: a client is its address cut to the configured prefix", "[limits]") {
    const auto address = [](const char* text) {
        splicer::net::SocketAddress out;
        auto* in4 = reinterpret_cast<sockaddr_in*>(&out.storage);
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
        if (::inet_pton(AF_INET, text, &in4->sin_addr) == 1) {
            in4->sin_family = AF_INET;
        } else {
            REQUIRE(::inet_pton(AF_INET6, text, &in6->sin6_addr) == 1);
            in6->sin6_family = AF_INET6;
        }
        return out;
    };
    using Row = std::tuple<const char*, const char*, std::uint32_t, std::uint32_t, bool>;
    const auto [a, b, ipv4, ipv6, same] =
        GENERATE(table<const char*, const char*, std::uint32_t, std::uint32_t, bool>({
            Row{"198.18.0.1", "198.18.0.1", 32, 64, true},
            Row{"198.18.0.1", "198.18.0.2", 32, 64, false},
            Row{"198.18.0.1", "198.18.0.254", 24, 64, true},
            Row{"198.18.0.1", "198.18.1.1", 24, 64, false},
            Row{"198.18.0.1", "198.19.255.255", 15, 64, true},  // 198.18.0.0/15
            Row{"198.18.0.1", "198.20.0.0", 15, 64, false},
            Row{"198.18.0.129", "198.18.0.255", 25, 64, true},  // a prefix inside a byte
            Row{"198.18.0.127", "198.18.0.128", 25, 64, false},
            Row{"127.0.0.1", "127.255.255.255", 1, 64, true},  // 0.0.0.0/1
            Row{"127.0.0.1", "198.18.0.1", 1, 64, false},
            // IPv4-mapped IPv6 is the IPv4 address, cut by the IPv4 prefix.
            Row{"::ffff:198.18.0.1", "198.18.0.1", 32, 64, true},
            Row{"::ffff:198.18.0.1", "198.18.0.77", 24, 128, true},
            Row{"::ffff:198.18.0.1", "198.18.1.1", 24, 128, false},
            Row{"2001:db8::1", "2001:db8::2", 32, 128, false},
            Row{"2001:db8::1", "2001:db8::2", 32, 64, true},
            Row{"2001:db8::1", "2001:db8:0:ff::2", 32, 56, true},
            Row{"2001:db8::1", "2001:db8:0:100::2", 32, 56, false},
            Row{"2001:db8:1::1", "2001:db8:1:ffff::1", 32, 48, true},
            Row{"2001:db8::1", "2001:db8::1", 32, 128, true},
            Row{"2001:db8::1", "2001:db9::1", 32, 31, true},  // 2001:db8::/31
            Row{"2001:db8::1", "2001:dba::1", 32, 31, false},
            // Families never mix: 0.0.0.0/1 and ::/1 hold different clients.
            Row{"127.0.0.1", "::7f00:1", 1, 1, false},
        }));
    CAPTURE(a, b, ipv4, ipv6);
    const splicer::net::ClientPrefix prefix{.ipv4 = ipv4, .ipv6 = ipv6};
    CHECK((splicer::net::host_key(address(a), prefix) ==
           splicer::net::host_key(address(b), prefix)) == same);
}

TEST_CASE("Admission: the per-client limit applies under pressure only, to the heaviest first",
          "[limits]") {
    using splicer::limits::Refusal;
    // max_connections 10, per client 2, max_probing 8. Connections from `others` (one each
    // from distinct clients) and from client "x" are held; then "x" and a light client "y"
    // each ask for one more. `probing`: the held connections are on the probing listener 0
    // (else on http listener 1, which never counts as probing).
    using Row = std::tuple<std::uint32_t, std::uint32_t, bool, bool, Refusal>;
    const auto [others, from_x, probing, pressure, x_gets] =
        GENERATE(table<std::uint32_t, std::uint32_t, bool, bool, Refusal>({
            // Idle daemon: a lone busy client is served past its limit.
            Row{0, 2, false, false, Refusal::none},
            Row{0, 4, false, false, Refusal::none},
            Row{2, 2, false, false, Refusal::none},  // 4 of 10 held
            // Half of max_connections held: the client over its limit is refused.
            Row{3, 2, false, true, Refusal::client_full},
            Row{0, 5, false, true, Refusal::client_full},  // its own load made the pressure
            Row{4, 1, false, true, Refusal::none},         // under its limit: admitted
            // Half of max_probing probing (4 of 8) is pressure too.
            Row{2, 2, true, true, Refusal::client_full},
            Row{1, 2, true, false, Refusal::none},
            // Full: max_probing refuses everyone alike.
            Row{7, 1, true, true, Refusal::probing_full},
        }));
    CAPTURE(others, from_x, probing, pressure);
    splicer::config::Config config;
    config.listeners.resize(1);
    config.http.emplace();
    config.http->listeners.resize(1);
    config.max_connections_per_client = 2;
    config.max_probing = 8;
    splicer::limits::Admission admission(config, 10);
    const std::size_t listener = probing ? 0 : 1;
    for (std::uint32_t i = 0; i < others; ++i) {
        REQUIRE(admission.admit(listener, "other" + std::to_string(i)) == Refusal::none);
    }
    for (std::uint32_t i = 0; i < from_x; ++i) {
        REQUIRE(admission.admit(listener, "x") == Refusal::none);
    }
    CHECK(admission.held() == others + from_x);
    CHECK(admission.under_pressure() == pressure);
    CHECK(admission.admit(listener, "x") == x_gets);
    if (x_gets != Refusal::probing_full) {
        // A light client is never refused by the per-client limit.
        CHECK(admission.admit(listener, "y") == Refusal::none);
    }
}

TEST_CASE("Admission: pressure ends as connections leave", "[limits]") {
    using splicer::limits::Refusal;
    splicer::config::Config config;
    config.listeners.resize(1);
    config.max_connections_per_client = 1;
    config.max_probing = 100;
    splicer::limits::Admission admission(config, 4);
    CHECK(admission.admit(0, "x") == Refusal::none);
    CHECK(admission.admit(0, "x") == Refusal::none);  // 1 of 4 held: no pressure yet
    CHECK(admission.under_pressure());                // 2 of 4
    CHECK(admission.admit(0, "x") == Refusal::client_full);
    admission.release(0, "x");
    CHECK_FALSE(admission.under_pressure());
    CHECK(admission.admit(0, "x") == Refusal::none);
    CHECK(admission.held() == 2);
    CHECK(admission.from_client("x") == 2);
}

TEST_CASE(
    "Admission: behind a balancer, per listener at accept and per client once the "
    "header named it",
    "[limits]") {
    using splicer::limits::Refusal;
    splicer::config::Config config;
    config.listeners.resize(1);
    config.max_connections_per_client = 2;
    config.max_probing = 100;
    splicer::limits::Admission admission(config, 8);
    // Six connections from one balancer: no client yet, none refused per client.
    for (int i = 0; i < 6; ++i) {
        REQUIRE(admission.admit(0, "") == Refusal::none);
    }
    CHECK(admission.under_pressure());
    CHECK(admission.from_client("") == 0);
    CHECK(admission.admit_client("a") == Refusal::none);
    CHECK(admission.admit_client("a") == Refusal::none);
    CHECK(admission.admit_client("a") == Refusal::client_full);  // the heaviest client
    CHECK(admission.admit_client("b") == Refusal::none);
    CHECK(admission.from_client("a") == 2);
    // The refused one is released with no client; the others with theirs.
    admission.release(0, "");
    admission.release(0, "a");
    CHECK(admission.from_client("a") == 1);
    CHECK(admission.held() == 4);
}

TEST_CASE("Admission: max_connections is counted here, across every worker's loop",
          "[limits][workers]") {
    using splicer::limits::Refusal;
    splicer::config::Config config;
    config.listeners.resize(1);
    config.max_connections_per_client = 100;
    config.max_probing = 100;
    splicer::limits::Admission admission(config, 3);
    for (int i = 0; i < 3; ++i) {
        REQUIRE(admission.admit(0, "c" + std::to_string(i)) == Refusal::none);
    }
    CHECK(admission.admit(0, "d") == Refusal::all_full);
    CHECK(admission.held() == 3);
    admission.release(0, "c0");
    CHECK(admission.admit(0, "d") == Refusal::none);
}

TEST_CASE("Admission: two threads admitting and releasing at once never exceed the limit",
          "[limits][workers]") {
    using splicer::limits::Refusal;
    splicer::config::Config config;
    config.listeners.resize(1);
    config.max_connections_per_client = 1'000'000;
    config.max_probing = 1'000'000;
    constexpr std::uint32_t kLimit = 50;
    splicer::limits::Admission admission(config, kLimit);
    std::atomic<std::uint32_t> held{0};
    std::atomic<std::uint32_t> most{0};
    std::atomic<std::uint64_t> refused{0};
    const auto worker = [&](const std::string& client) {
        std::vector<bool> mine;
        for (int round = 0; round < 20'000; ++round) {
            if (round % 3 != 2) {
                if (admission.admit(0, client) == Refusal::none) {
                    const std::uint32_t now = ++held;
                    std::uint32_t seen = most.load();
                    while (now > seen && !most.compare_exchange_weak(seen, now)) {
                    }
                    mine.push_back(true);
                } else {
                    ++refused;
                }
            } else if (!mine.empty()) {
                mine.pop_back();
                --held;
                admission.release(0, client);
            }
        }
        for (std::size_t i = 0; i < mine.size(); ++i) {
            --held;
            admission.release(0, client);
        }
    };
    std::thread first(worker, "a");
    std::thread second(worker, "b");
    first.join();
    second.join();
    CHECK(most.load() <= kLimit);
    CHECK(refused.load() > 0);  // the limit was reached, so it was tested
    CHECK(admission.held() == 0);
    CHECK(admission.from_client("a") == 0);
    CHECK(admission.from_client("b") == 0);
}

TEST_CASE("worker_fds: each worker past the first adds its ring, mailbox and listeners",
          "[limits][workers]") {
    CHECK(splicer::limits::worker_fds(1, 4) == 0);
    CHECK(splicer::limits::worker_fds(2, 4) == splicer::limits::kFdsPerWorker + 4);
    CHECK(splicer::limits::worker_fds(8, 2) == 7 * (splicer::limits::kFdsPerWorker + 2));
}
