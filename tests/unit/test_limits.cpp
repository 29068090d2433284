// Limits as pure logic: the fd budget for max_connections and the once-per-interval gate that
// keeps a flood of refusals from becoming a flood of log lines.

#include <catch2/catch.hpp>
#include <chrono>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "limits/admission.h"
#include "limits/fd_limit.h"
#include "net/address.h"
#include "log/interval_gate.h"

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
    splicer::limits::Admission admission(limits_config());
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
    splicer::limits::Admission admission(config);
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
    CHECK(host_key(v6("2001:db8::1", 5)) != host_key(v6("2001:db8::2", 5)));
}
