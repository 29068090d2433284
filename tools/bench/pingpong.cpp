// bench_pingpong HOST PORT SECONDS MAX_ROUNDS SIZE: on one established connection, sends
// SIZE bytes and waits for them to come back (an echo server behind the forwarder), until
// SECONDS pass or MAX_ROUNDS round trips are done. Prints one line:
//   rounds=N rate=R p50_us=A p99_us=B max_us=C
// Latency on an established connection is where a redirect-per-skb plane may add jitter.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <vector>

#include "tool_support.h"

namespace bench = splicer::bench;
using Clock = std::chrono::steady_clock;

namespace {

double percentile(const std::vector<double>& sorted, double fraction) {
    const auto index = static_cast<std::size_t>(fraction * static_cast<double>(sorted.size() - 1));
    return sorted[index];
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 6) {
        bench::die("usage: bench_pingpong HOST PORT SECONDS MAX_ROUNDS SIZE");
    }
    const auto address = bench::endpoint_from_args(argv[1], argv[2]);
    const auto duration = bench::seconds_from_arg(argv[3], "seconds");
    const auto max_rounds = bench::number_from_arg(argv[4], "max rounds");
    const auto size = bench::number_from_arg(argv[5], "size");
    if (size == 0 || size > 65536) {
        bench::die("size: expected 1..65536");
    }
    const splicer::UniqueFd fd = bench::connect_within(address, 3000);
    if (!fd) {
        bench::die("connect failed");
    }
    std::vector<std::byte> message(size, std::byte{'p'});
    std::vector<std::byte> reply(size);
    std::vector<double> latencies_us;
    latencies_us.reserve(std::min<std::uint64_t>(max_rounds, 1u << 22));
    const auto start = Clock::now();
    const auto end = start + duration;
    while (latencies_us.size() < max_rounds) {
        const auto sent_at = Clock::now();
        if (sent_at >= end) {
            break;
        }
        if (!bench::send_all(fd.get(), message) || !bench::receive_exactly(fd.get(), reply, 3000)) {
            bench::die("connection failed during the ping-pong");
        }
        latencies_us.push_back(
            std::chrono::duration<double, std::micro>(Clock::now() - sent_at).count());
    }
    if (latencies_us.empty()) {
        bench::die("no round trip completed");
    }
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    std::sort(latencies_us.begin(), latencies_us.end());
    std::printf("rounds=%zu rate=%.0f p50_us=%.1f p99_us=%.1f max_us=%.1f\n", latencies_us.size(),
                static_cast<double>(latencies_us.size()) / elapsed, percentile(latencies_us, 0.5),
                percentile(latencies_us, 0.99), latencies_us.back());
    return 0;
}
