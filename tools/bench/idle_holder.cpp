// bench_idle_holder HOST PORT COUNT SECONDS: opens up to COUNT connections through a
// forwarder to an echo server, proves each one end to end (a short line sent and echoed
// back), then holds them all open and idle. Prints "established=N" once (N < COUNT when the
// forwarder refused, stalled or died, or SECONDS ran out) and holds until killed, so the
// caller can measure what the forwarder keeps per idle connection.

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <vector>

#include "tool_support.h"

namespace bench = splicer::bench;

int main(int argc, char** argv) {
    if (argc != 5) {
        bench::die("usage: bench_idle_holder HOST PORT COUNT SECONDS");
    }
    bench::raise_fd_limit();
    const auto address = bench::endpoint_from_args(argv[1], argv[2]);
    const auto count = bench::number_from_arg(argv[3], "count");
    const auto deadline =
        std::chrono::steady_clock::now() + bench::seconds_from_arg(argv[4], "seconds");
    std::vector<splicer::UniqueFd> held;
    held.reserve(count);
    const std::array<std::byte, 5> line{std::byte{'i'}, std::byte{'d'}, std::byte{'l'},
                                        std::byte{'e'}, std::byte{'\n'}};
    std::array<std::byte, line.size()> echoed{};
    while (held.size() < count && std::chrono::steady_clock::now() < deadline) {
        splicer::UniqueFd fd = bench::connect_within(address, 2000);
        if (!fd || !bench::send_all(fd.get(), line) ||
            !bench::receive_exactly(fd.get(), echoed, 2000)) {
            break;  // the forwarder's limit: report how far it got
        }
        held.push_back(std::move(fd));
    }
    std::printf("established=%zu\n", held.size());
    std::fflush(stdout);
    for (;;) {
        ::pause();
    }
}
