// bench_idle_holder HOST PORT COUNT SECONDS: opens up to COUNT connections through a
// forwarder to an echo server, proves each one end to end (a short line sent and echoed
// back), then holds them all open and idle. Prints "established=N" once (N < COUNT when the
// forwarder refused, stalled or died, or SECONDS ran out) and holds until SIGTERM or SIGINT
// (exit 0) or SIGKILL, so the caller can measure what the forwarder keeps per idle connection.
// On SIGUSR1 it proves every held connection again, each with a line of its own (so two
// connections crossed in the forwarder show as a failure, not as an echo), and prints
// "echoed=E failed=F" (E + F = N): the hold test's proof that idle connections still carry
// bytes after the hold (tests/privileged/test_idle_hold.cpp).

#include <unistd.h>

#include <array>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "tool_support.h"

namespace bench = splicer::bench;

namespace {

constexpr int kRoundTripMs = 2000;
// Lines sent before their echoes are read: a few KiB per batch, far under any socket
// buffer, so no send can block on an echo not yet read.
constexpr std::size_t kBatch = 256;
// After this many failed connections the rest are not waited for (each could cost
// kRoundTripMs): they count as failed, and the answer comes in bounded time.
constexpr std::size_t kGiveUpAfterFailures = 16;

std::span<const std::byte> bytes_of(const std::string& text) {
    return std::as_bytes(std::span(text.data(), text.size()));
}

// "check 0000000042\n": the same length for every index, different for each.
std::string line_for(std::size_t index) {
    std::array<char, 32> text{};
    std::snprintf(text.data(), text.size(), "check %010zu\n", index);
    return text.data();
}

// Every held connection sends its own line and must get exactly that back.
void check_all(const std::vector<splicer::UniqueFd>& held) {
    std::size_t echoed = 0;
    std::size_t failed = 0;
    for (std::size_t first = 0; first < held.size(); first += kBatch) {
        const std::size_t end = std::min(held.size(), first + kBatch);
        std::vector<bool> sent(end - first, false);
        for (std::size_t i = first; i < end; ++i) {
            sent[i - first] = failed < kGiveUpAfterFailures &&
                              bench::send_all(held[i].get(), bytes_of(line_for(i)));
        }
        for (std::size_t i = first; i < end; ++i) {
            const std::string expected = line_for(i);
            std::string received(expected.size(), '\0');
            const bool ok =
                sent[i - first] && failed < kGiveUpAfterFailures &&
                bench::receive_exactly(held[i].get(), std::as_writable_bytes(std::span(received)),
                                       kRoundTripMs) &&
                received == expected;
            (ok ? echoed : failed) += 1;
        }
    }
    std::printf("echoed=%zu failed=%zu\n", echoed, failed);
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 5) {
        bench::die("usage: bench_idle_holder HOST PORT COUNT SECONDS");
    }
    // Blocked before any work, so a signal that comes early waits for sigwait below instead
    // of killing the holder (SIGTERM, SIGINT) or being lost (SIGUSR1).
    sigset_t handled;
    sigemptyset(&handled);
    sigaddset(&handled, SIGUSR1);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGINT);
    if (::sigprocmask(SIG_BLOCK, &handled, nullptr) != 0) {
        bench::die("sigprocmask");
    }
    bench::raise_fd_limit();
    const auto address = bench::endpoint_from_args(argv[1], argv[2]);
    const auto count = bench::number_from_arg(argv[3], "count");
    const auto deadline =
        std::chrono::steady_clock::now() + bench::seconds_from_arg(argv[4], "seconds");
    std::vector<splicer::UniqueFd> held;
    held.reserve(count);
    const std::string line = "idle\n";
    std::string echoed(line.size(), '\0');
    while (held.size() < count && std::chrono::steady_clock::now() < deadline) {
        splicer::UniqueFd fd = bench::connect_within(address, kRoundTripMs);
        if (!fd || !bench::send_all(fd.get(), bytes_of(line)) ||
            !bench::receive_exactly(fd.get(), std::as_writable_bytes(std::span(echoed)),
                                    kRoundTripMs) ||
            echoed != line) {
            break;  // the forwarder's limit: report how far it got
        }
        held.push_back(std::move(fd));
    }
    std::printf("established=%zu\n", held.size());
    std::fflush(stdout);
    for (;;) {
        int signal_number = 0;
        if (::sigwait(&handled, &signal_number) != 0) {
            bench::die("sigwait");
        }
        if (signal_number != SIGUSR1) {
            return 0;  // the held fds close with the process
        }
        check_all(held);
    }
}
