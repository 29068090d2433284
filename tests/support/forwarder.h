#pragma once
// A poll()-based driver for one pair of sockets spliced by the sockmap verdict, doing in a
// test thread what the daemon's event loop does per connection (DESIGN.md, data flow 5-7):
// take baselines, pair, kick; copy bytes the verdict passed (flow control) once the
// destination has absorbed every redirected byte; propagate EOF only when
// plane::eof_may_propagate() says so. Deliberately simple: blocking-free syscalls, one thread,
// a short tick while something is pending.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "splicer/flow_accounting.h"
#include "splicer/splice_program.h"

namespace splicer::test {

struct ForwarderOptions {
    bool kick = true;
    // Shut the destination down as soon as the source reports RDHUP: the unsafe way, kept to
    // show that kernel fact 4 is real.
    bool naive_eof = false;
    int tick_ms = 2;  // recheck interval while waiting on absorption or on an EOF
    // How passed bytes are copied once dst has absorbed every redirected byte:
    // false: recv, send, set_copied (the bytes leave the source before the commit);
    // true: peek, send what dst takes, set_copied, then consume exactly that. The source's
    // TCP window reopens only after the commit, so arrivals cannot keep the link in passing
    // mode forever (see the report in the flow-control tests).
    bool peek_commit = false;
};

struct DirectionReport {
    std::uint64_t copied_bytes = 0;   // passed bytes this forwarder copied
    std::uint64_t copy_episodes = 0;  // times it found the link in passing mode and copied
    std::uint64_t absorb_waits = 0;   // ticks spent waiting for redirects to be absorbed
    std::uint64_t eof_checks = 0;     // eof_may_propagate() calls that answered false
    bool eof_seen = false;
    bool eof_propagated = false;
};

class SockmapForwarder {
public:
    // Pairs front (client side) and back (backend side) and starts the forwarding thread.
    // Throws std::runtime_error when baselines, pairing or the kick fail.
    SockmapForwarder(bpf::SpliceProgram& program, int front_fd, int back_fd,
                     ForwarderOptions options = {});
    ~SockmapForwarder();  // stop()
    SockmapForwarder(const SockmapForwarder&) = delete;
    SockmapForwarder& operator=(const SockmapForwarder&) = delete;

    // Stops the thread and unpairs; idempotent.
    void stop();
    // Both directions have propagated EOF.
    [[nodiscard]] bool finished() const { return finished_.load(); }
    // Waits (bounded) until finished() or the loop stopped on an error.
    bool wait_finished(std::chrono::milliseconds timeout) const;

    [[nodiscard]] DirectionReport report(int direction) const;  // enum splicer_direction
    [[nodiscard]] std::string error() const;                    // empty unless the loop failed

private:
    struct Direction {
        int src = -1;
        int dst = -1;
        splicer_cookie src_cookie = 0;
        plane::SocketBaseline* src_baseline = nullptr;
        plane::SocketBaseline* dst_baseline = nullptr;
        std::string pending;  // received from src, not yet written to dst
        std::size_t pending_offset = 0;
        std::uint64_t copied = 0;
        bool waiting_absorb = false;
        bool waiting_dst = false;  // peek_commit: dst took less than offered
        bool spurious_wakeup = false;
        bool in_episode = false;
        // While an EOF waits: what dst had absorbed when it last moved, and when.
        std::uint64_t last_absorbed = 0;
        std::chrono::steady_clock::time_point last_progress{};
        DirectionReport report;
    };

    void run();
    void service(Direction& direction, short src_revents);
    bool flush(Direction& direction);
    // peek_commit: one round; false when it cannot go on now.
    bool peek_commit(Direction& direction, std::uint64_t available);
    void fail(const std::string& message);

    bpf::SpliceProgram& program_;
    int front_fd_;
    int back_fd_;
    ForwarderOptions options_;
    plane::SocketBaseline front_baseline_;
    plane::SocketBaseline back_baseline_;
    Direction directions_[2];
    std::atomic<bool> stop_{false};
    std::atomic<bool> finished_{false};
    std::atomic<bool> loop_done_{false};
    bool stopped_ = false;
    mutable std::mutex mutex_;  // guards the reports and error_ while the thread runs
    std::string error_;
    std::vector<char> scratch_;
    std::thread thread_;
};

}  // namespace splicer::test
