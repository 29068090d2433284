#pragma once
// A slowloris swarm: many clients, each trickling the opening of a message (a ClientHello, an
// HTTP request head) one byte per interval and never finishing it. A client the server closes
// reconnects at once, so the pressure stays constant. One thread (epoll) serves them all; the
// swarm runs for a bounded time and closes everything it opened.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace splicer::test {

struct TrickleTarget {
    std::uint16_t port = 0;     // on 127.0.0.1
    std::string opening;        // trickled from its first byte; never sent whole in time
    std::vector<std::string> sources;  // IPv4 source addresses, e.g. 127.0.1.1
    int clients_per_source = 10;
    // A reply starting with this counts as `answered` (e.g. "HTTP/1.1 408"); empty: none.
    std::string expected_answer;
};

struct TrickleCounts {
    std::uint64_t connects = 0;       // connections opened (reconnects included)
    std::uint64_t cut = 0;            // closed or reset by the server
    std::uint64_t answered = 0;       // replies starting with expected_answer
    std::uint64_t connect_failures = 0;  // refused or failed before any byte went out
    std::uint64_t bytes_sent = 0;
};

class TrickleSwarm {
public:
    // Starts every target's clients, spread over the first second, each sending one byte of
    // its opening every `interval`; stops by itself after `duration`.
    TrickleSwarm(std::vector<TrickleTarget> targets, std::chrono::milliseconds duration,
                 std::chrono::milliseconds interval = std::chrono::seconds(1));
    ~TrickleSwarm();
    TrickleSwarm(const TrickleSwarm&) = delete;
    TrickleSwarm& operator=(const TrickleSwarm&) = delete;

    [[nodiscard]] bool running() const { return !finished_.load(); }
    // Waits for the end (the duration, or now when `stop_now`), closes every socket; per
    // target, in the order given.
    std::vector<TrickleCounts> finish(bool stop_now = false);

private:
    void run();

    std::vector<TrickleTarget> targets_;
    std::chrono::milliseconds duration_;
    std::chrono::milliseconds interval_;
    std::vector<TrickleCounts> counts_;
    std::atomic<bool> stop_{false};
    std::atomic<bool> finished_{false};
    std::thread thread_;
};

}  // namespace splicer::test
