// Limits as pure logic: the fd budget for max_connections and the once-per-interval gate that
// keeps a flood of refusals from becoming a flood of log lines.

#include <catch2/catch.hpp>
#include <chrono>

#include "limits/fd_limit.h"
#include "log/interval_gate.h"

using namespace std::chrono_literals;
using splicer::log::IntervalGate;

TEST_CASE("fds_needed: two sockets per connection, two pipes more on the splice plane",
          "[limits]") {
    CHECK(splicer::limits::fds_needed(0, "copy") == splicer::limits::kFixedFds);
    CHECK(splicer::limits::fds_needed(1000, "copy") == 256 + 2000);
    CHECK(splicer::limits::fds_needed(1000, "sockmap") == 256 + 2000);
    CHECK(splicer::limits::fds_needed(1000, "splice") == 256 + 6000);
    CHECK(splicer::limits::fds_needed(1'000'000, "splice") == 256 + 6'000'000);
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
