// bench_slow_readers HOST PORT COUNT RATE SECONDS: opens COUNT connections through a
// forwarder to a stream server (bench_stream_server), sends a request line on each, then
// reads each at RATE bytes per second (0: never reads) for SECONDS. Prints "established=N"
// once every connection is open (N < COUNT when the forwarder refused or stalled), and at the
// end "received=BYTES ended=K" (K: connections the forwarder closed or reset meanwhile).
// The caller measures what the path holds meanwhile (scripts/bench.d/workloads.sh).

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <thread>
#include <vector>

#include "tool_support.h"

namespace bench = splicer::bench;
using Clock = std::chrono::steady_clock;

namespace {

// Reads take place every tick, RATE / kTicksPerSecond bytes per connection each time.
constexpr int kTicksPerSecond = 10;

struct Reader {
    splicer::UniqueFd fd;
    bool ended = false;
};

// Reads up to `budget` bytes without waiting. Returns what it read; marks an ended stream.
std::uint64_t read_some(Reader& reader, std::uint64_t budget, std::span<std::byte> buffer) {
    std::uint64_t got_total = 0;
    while (got_total < budget) {
        const std::size_t want = std::min<std::uint64_t>(budget - got_total, buffer.size());
        const ssize_t got = ::recv(reader.fd.get(), buffer.data(), want, MSG_DONTWAIT);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
            reader.ended = true;
            break;
        }
        if (got < 0) {
            break;
        }
        got_total += static_cast<std::uint64_t>(got);
    }
    return got_total;
}

// A connection the forwarder ended (RST or FIN) while its bytes were not read.
bool ended_unread(int fd) {
    pollfd state{.fd = fd, .events = POLLRDHUP};
    return ::poll(&state, 1, 0) == 1 && (state.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 6) {
        bench::die("usage: bench_slow_readers HOST PORT COUNT RATE SECONDS");
    }
    bench::raise_fd_limit();
    const auto address = bench::endpoint_from_args(argv[1], argv[2]);
    const auto count = bench::number_from_arg(argv[3], "count");
    const auto rate = bench::number_from_arg(argv[4], "rate");
    const auto deadline = Clock::now() + bench::seconds_from_arg(argv[5], "seconds");
    const std::array<std::byte, 7> line{std::byte{'s'}, std::byte{'t'}, std::byte{'r'},
                                        std::byte{'e'}, std::byte{'a'}, std::byte{'m'},
                                        std::byte{'\n'}};
    std::vector<Reader> readers;
    readers.reserve(count);
    while (readers.size() < count && Clock::now() < deadline) {
        splicer::UniqueFd fd = bench::connect_within(address, 2000);
        if (!fd || !bench::send_all(fd.get(), line)) {
            break;  // the forwarder's limit: report how far it got
        }
        readers.push_back(Reader{std::move(fd)});
    }
    std::printf("established=%zu\n", readers.size());
    std::fflush(stdout);
    std::vector<std::byte> buffer(64 * 1024);
    std::uint64_t received = 0;
    const std::uint64_t budget = rate / kTicksPerSecond;
    auto next = Clock::now();
    while (Clock::now() < deadline) {
        for (Reader& reader : readers) {
            if (budget > 0 && !reader.ended) {
                received += read_some(reader, budget, buffer);
            }
        }
        next += std::chrono::milliseconds(1000 / kTicksPerSecond);
        std::this_thread::sleep_until(std::min(next, deadline));
    }
    std::size_t ended = 0;
    for (const Reader& reader : readers) {
        ended += (reader.ended || (budget == 0 && ended_unread(reader.fd.get()))) ? 1 : 0;
    }
    std::printf("received=%llu ended=%zu\n", static_cast<unsigned long long>(received), ended);
    return 0;
}
