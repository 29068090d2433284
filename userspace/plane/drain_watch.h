#pragma once
// Whether the reader behind a sink takes the bytes queued toward it, decided from looks at
// the sink's TCP counters (plane/sink_look.h takes them; the planes carry out the answers).
// Pure logic, one per direction.
//
// Two questions, asked at two moments:
// - When the sink is full (the plane had more bytes than it took): does its reader keep up,
//   so a larger send buffer would raise the throughput? The sockmap plane's throughput is
//   its send buffer per 4 ms jiffy (DESIGN.md, kernel fact 3), but a large buffer costs its
//   size in kernel memory for every reader that stops, so it is raised only for a reader
//   that has taken kRaiseAfterBytes at kRaiseRate or faster.
// - On the plane's watch, once a while bytes are queued: has the reader taken anything
//   since the last look? Nothing for kLowerAfter: lower the send buffer again (a reader
//   that stopped keeps what is queued, but no more); nothing for `stall_timeout`: the pair
//   is stalled and ends. An idle sink (nothing queued, nothing held) is never stalled.
//   A lowered sink whose reader takes kResumeAfterBytes again has resumed: what the stop
//   put on is taken off again (plane/sink_watch.h).

#include <chrono>
#include <cstdint>

namespace splicer::plane {

using WatchClock = std::chrono::steady_clock;

// One look at a sink.
struct SinkLook {
    WatchClock::time_point at;
    std::uint64_t acked = 0;  // tcpi_bytes_acked: bytes its reader has taken, in all
    bool queued = false;      // bytes written into the sink and not yet acknowledged
    bool held = false;        // bytes the daemon holds for it (a buffer, a pipe, a send)
};

enum class SinkVerdict {
    idle,     // nothing queued or held: nothing to watch
    moving,   // bytes wait and the reader took some since the last look
    waiting,  // bytes wait and the reader took none since the last look
    lower,    // waiting for kLowerAfter: lower the send buffer (said once per stop)
    resumed,  // lowered, and the reader took kResumeAfterBytes since (said once per stop)
    stalled,  // waiting for stall_timeout: end the pair
};

// Reader progress needed before a send buffer is raised: a real reader, not one whose own
// receive window swallowed the first megabytes.
inline constexpr std::uint64_t kRaiseAfterBytes = 16ULL << 20;
// ... at this rate or faster (bytes per second): 256 Mb/s, where the kernel's autotuned
// buffer starts to limit the sockmap plane.
inline constexpr std::uint64_t kRaiseRate = 32ULL << 20;
inline constexpr std::chrono::milliseconds kLowerAfter{1000};
// Reader progress after a stop that ends it: the sink took twice its lowered send buffer, so
// a reader that only trickles (a few KiB now and then) stays braked, one that reads again
// is released within a watch interval.
inline constexpr std::uint64_t kResumeAfterBytes = 1ULL << 20;

class DrainWatch {
public:
    // At a moment the sink was found full: true once (until lowered again) when the reader
    // keeps up, i.e. the send buffer should be raised.
    bool full(const SinkLook& look);

    // On the watch: what the reader did since the previous look. `stall_timeout` 0: never
    // stalled.
    SinkVerdict tick(const SinkLook& look, std::chrono::seconds stall_timeout);

    [[nodiscard]] bool raised() const { return raised_; }
    // The last progress before the current (or last) stop: when the reader stopped taking.
    // Valid from a tick that said `lower`; kept through `resumed`, for the resume's log line.
    [[nodiscard]] WatchClock::time_point stopped_since() const { return stopped_since_; }

private:
    bool watching_ = false;  // a tick saw bytes waiting; last_* below are valid
    std::uint64_t last_acked_ = 0;
    WatchClock::time_point last_progress_{};
    bool lowered_ = false;
    std::uint64_t lowered_acked_ = 0;  // acked when lowered
    WatchClock::time_point stopped_since_{};

    bool streak_started_ = false;  // full(): where the current run of progress began
    std::uint64_t streak_acked_ = 0;
    WatchClock::time_point streak_at_{};
    bool raised_ = false;
};

}  // namespace splicer::plane
