// The log's writer thread (log/line_queue.h) takes lines in batches: a line per request
// used to cost a thread wake and a write(2) each. Standard error is a SOCK_SEQPACKET socket
// here, so every write(2) arrives as one packet and the test counts them.

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cctype>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "log/line_queue.h"
#include "splicer/log.h"

namespace {

using Clock = std::chrono::steady_clock;

// Points fd 2 at one end of a SOCK_SEQPACKET pair for the test's life, then puts the old
// stderr back.
class CapturedStderr {
public:
    CapturedStderr() {
        REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends_) == 0);
        saved_ = ::dup(STDERR_FILENO);
        REQUIRE(saved_ >= 0);
        REQUIRE(::dup2(ends_[0], STDERR_FILENO) == STDERR_FILENO);
    }
    ~CapturedStderr() {
        ::dup2(saved_, STDERR_FILENO);
        ::close(saved_);
        ::close(ends_[0]);
        ::close(ends_[1]);
    }
    CapturedStderr(const CapturedStderr&) = delete;
    CapturedStderr& operator=(const CapturedStderr&) = delete;

    // One write(2) of the writer, or empty when none came within `within`.
    std::string next_write(std::chrono::milliseconds within) const {
        pollfd readable{.fd = ends_[1], .events = POLLIN, .revents = 0};
        if (::poll(&readable, 1, static_cast<int>(within.count())) != 1) {
            return {};
        }
        std::string packet(64 * 1024, '\0');
        const ssize_t n = ::recv(ends_[1], packet.data(), packet.size(), MSG_DONTWAIT);
        packet.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
        return packet;
    }

private:
    int ends_[2] = {-1, -1};
    int saved_ = -1;
};

// The voluntary context switches so far of this process's thread named `name` (the times it
// slept: a wait on a futex or a timer), or nothing when no thread has that name.
std::optional<long> voluntary_switches_of_thread(const std::string& name) {
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
        std::ifstream comm(task.path() / "comm");
        std::string thread_name;
        if (!std::getline(comm, thread_name) || thread_name != name) {
            continue;
        }
        std::ifstream status(task.path() / "status");
        std::string key;
        while (status >> key) {
            if (key == "voluntary_ctxt_switches:") {
                long switches = 0;
                status >> switches;
                return switches;
            }
        }
    }
    return std::nullopt;
}

}  // namespace

TEST_CASE(
    "log writer: a steady stream of lines wakes the writer once per batch, never from a log call",
    "[log]") {
    // A busy daemon logs a few lines per request from every worker. The writer used to park
    // after each batch, so the next line's log call woke it (a futex wake in the caller) and
    // it then slept again to gather: two writer sleeps per batch written. Now it keeps
    // gathering on its own timer while lines come: one sleep per batch.
    CapturedStderr captured;
    splicer::log::start_writer(256 * 1024);
    std::atomic<int> writes{0};
    std::thread reader([&captured, &writes] {
        // Keeps the socket drained (the writer never waits for room) and counts the batches.
        for (int i = 0; i < 1000 && !captured.next_write(std::chrono::milliseconds(1000)).empty();
             ++i) {
            ++writes;
        }
    });
    // One line first: the writer leaves its park, and is counted from inside a gathering.
    REQUIRE(splicer::log::emit("first\n"));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const std::optional<long> before =
        voluntary_switches_of_thread(splicer::log::kWriterThreadName);
    const int writes_before = writes.load();
    REQUIRE(before.has_value());
    // A line every 2 ms (or as often as a loaded machine lets this thread run) for 300 lines.
    constexpr int kLines = 300;
    for (int i = 0; i < kLines; ++i) {
        REQUIRE(splicer::log::emit("line " + std::to_string(i) + "\n"));
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    const std::optional<long> after = voluntary_switches_of_thread(splicer::log::kWriterThreadName);
    const int batches = writes.load() - writes_before;
    splicer::log::stop_writer();
    reader.join();
    REQUIRE(after.has_value());
    const long sleeps = *after - *before;
    INFO("the writer slept " << sleeps << " times and wrote " << batches << " batches of " << kLines
                             << " lines");
    // One sleep per batch (its gathering), a third more for a gathering that found no line on
    // a loaded machine (then it parks, and a line wakes it), and the edges. The old writer
    // slept twice per batch.
    CHECK(batches >= 1);
    CHECK(sleeps <= batches * 4 / 3 + 2);
}

TEST_CASE("log writer: lines logged a little apart go out together, whole, in order and soon",
          "[log]") {
    CapturedStderr captured;
    splicer::log::start_writer(64 * 1024);
    // 20 lines 1 ms apart: the old writer, woken per line, wrote each alone.
    constexpr int kLines = 20;
    std::string expected;
    const auto started = Clock::now();
    for (int i = 0; i < kLines; ++i) {
        std::string line = "line " + std::to_string(i) + "\n";
        expected += line;
        REQUIRE(splicer::log::emit(line));
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const auto span = Clock::now() - started;
    std::string received;
    int writes = 0;
    while (received.size() < expected.size() && writes < kLines + 1) {
        const std::string packet = captured.next_write(std::chrono::milliseconds(2000));
        if (packet.empty()) {
            break;
        }
        ++writes;
        received += packet;
    }
    const auto took = Clock::now() - started;
    splicer::log::stop_writer();
    INFO("writes: " << writes << ", all lines out after "
                    << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                    << " ms");
    CHECK(received == expected);
    // A batch gathers for 20 ms: at most one write per 20 ms the lines took to log, and the
    // last. (A loaded machine stretches the span; the bound grows with it.)
    const auto span_ms = std::chrono::duration_cast<std::chrono::milliseconds>(span).count();
    INFO("the lines took " << span_ms << " ms to log");
    CHECK(writes <= span_ms / 20 + 2);
    CHECK(took < std::chrono::milliseconds(1000));  // a batch waits 20 ms, not for more lines
}

TEST_CASE("log writer: the stop writes the lines still waiting", "[log]") {
    CapturedStderr captured;
    splicer::log::start_writer(64 * 1024);
    REQUIRE(splicer::log::emit("last words\n"));
    splicer::log::stop_writer();
    CHECK(captured.next_write(std::chrono::milliseconds(0)) == "last words\n");
}

// Now's UTC second as the log writes it: 2026-12-05T07:34:47. From clock_gettime, the log's
// own clock: time(2) reads the coarse clock, up to a tick (4 ms) behind in the first
// milliseconds of a second (CI: a line at 22:56:04.004 while time() still said :03).
std::string utc_second_text() {
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    std::tm utc{};
    gmtime_r(&now.tv_sec, &utc);
    char text[32] = {};
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
    return text;
}

TEST_CASE("log format: the timestamp is the UTC second to the millisecond, line after line",
          "[log]") {
    // The date and time of day are formatted once a second per thread and reused: each line
    // still carries the second it was made in.
    for (int i = 0; i < 3; ++i) {
        const std::string before = utc_second_text();
        const std::string line = splicer::log::format_line(splicer::log::Level::info, "a", {});
        const std::string after = utc_second_text();
        INFO(line);
        // ts=2026-12-05T07:34:47.123Z level=info event=a
        REQUIRE(line.size() == 46);
        CHECK(line.compare(0, 3, "ts=") == 0);
        const std::string second = line.substr(3, 19);
        CHECK((second == before || second == after));
        CHECK(line[22] == '.');
        for (const std::size_t digit : std::initializer_list<std::size_t>{23, 24, 25}) {
            CHECK(std::isdigit(static_cast<unsigned char>(line[digit])) != 0);
        }
        CHECK(line.substr(26) == "Z level=info event=a");
        std::this_thread::sleep_for(std::chrono::milliseconds(600));  // into the next second
    }
}
