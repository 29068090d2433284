// plane::DrainWatch: when a sink's send buffer is raised, lowered, and when the pair is
// stalled, from sequences of looks at the sink (no sockets: the looks are made up).

#include <catch2/catch.hpp>
#include <chrono>

#include "plane/drain_watch.h"

using splicer::plane::DrainWatch;
using splicer::plane::kLowerAfter;
using splicer::plane::kRaiseAfterBytes;
using splicer::plane::SinkLook;
using splicer::plane::SinkVerdict;
using splicer::plane::WatchClock;
using namespace std::chrono_literals;

namespace {

const WatchClock::time_point kStart{};

SinkLook look(std::chrono::milliseconds at, std::uint64_t acked, bool queued = true,
              bool held = false) {
    return {.at = kStart + at, .acked = acked, .queued = queued, .held = held};
}

}  // namespace

TEST_CASE("a sink with nothing queued or held is idle, however long its reader sleeps",
          "[drain]") {
    DrainWatch watch;
    for (int second = 0; second < 600; second += 7) {
        CHECK(watch.tick(look(std::chrono::seconds(second), 1000, false, false), 2s) ==
              SinkVerdict::idle);
    }
}

TEST_CASE("bytes waiting with no progress: lowered after kLowerAfter, stalled at stall_timeout",
          "[drain]") {
    DrainWatch watch;
    CHECK(watch.tick(look(0ms, 500), 3s) == SinkVerdict::waiting);  // the first look
    CHECK(watch.tick(look(500ms, 500), 3s) == SinkVerdict::waiting);
    CHECK(watch.tick(look(kLowerAfter, 500), 3s) == SinkVerdict::lower);
    CHECK(watch.tick(look(2000ms, 500), 3s) == SinkVerdict::waiting);  // lowered once
    CHECK(watch.tick(look(2999ms, 500, false, true), 3s) == SinkVerdict::waiting);  // held
    CHECK(watch.tick(look(3000ms, 500), 3s) == SinkVerdict::stalled);
}

TEST_CASE("stall_timeout 0 never stalls", "[drain]") {
    DrainWatch watch;
    watch.tick(look(0ms, 0), 0s);
    CHECK(watch.tick(look(3600s, 0), 0s) != SinkVerdict::stalled);
}

TEST_CASE("any progress restarts the stall clock, and idle in between forgets it", "[drain]") {
    DrainWatch watch;
    watch.tick(look(0ms, 0), 2s);
    // A slow reader: 64 KiB every 1.5 s, never 2 s without progress.
    for (int i = 1; i <= 20; ++i) {
        CHECK(watch.tick(look(std::chrono::milliseconds(1500 * i), 65536ULL * static_cast<unsigned>(i)), 2s) ==
              SinkVerdict::moving);
    }
    // Everything taken: idle; bytes that wait later start a new clock.
    CHECK(watch.tick(look(40s, 1ULL << 21, false), 2s) == SinkVerdict::idle);
    CHECK(watch.tick(look(100s, 1ULL << 21), 2s) == SinkVerdict::waiting);
    CHECK(watch.tick(look(101500ms, 1ULL << 21), 2s) == SinkVerdict::lower);
    CHECK(watch.tick(look(102s, 1ULL << 21), 2s) == SinkVerdict::stalled);
}

TEST_CASE("raised only for a reader that took kRaiseAfterBytes fast, once until lowered",
          "[drain]") {
    DrainWatch watch;
    CHECK_FALSE(watch.full(look(0ms, 0)));
    // A never-reading client whose receive window took 6 MiB at once: not enough.
    CHECK_FALSE(watch.full(look(1ms, 6ULL << 20)));
    CHECK_FALSE(watch.full(look(5000ms, 6ULL << 20)));
    // A slow reader: 16 MiB, but over minutes.
    DrainWatch slow;
    slow.full(look(0ms, 0));
    CHECK_FALSE(slow.full(look(256s, kRaiseAfterBytes)));
    CHECK_FALSE(slow.raised());
    // A bulk reader: 16 MiB in 20 ms.
    DrainWatch bulk;
    bulk.full(look(0ms, 0));
    CHECK_FALSE(bulk.full(look(10ms, kRaiseAfterBytes / 2)));
    CHECK(bulk.full(look(20ms, kRaiseAfterBytes)));
    CHECK(bulk.raised());
    CHECK_FALSE(bulk.full(look(40ms, 2 * kRaiseAfterBytes)));  // once
    // It stops: lowered, and raised again once it reads fast again.
    bulk.tick(look(1000ms, 2 * kRaiseAfterBytes), 120s);
    CHECK(bulk.tick(look(2000ms, 2 * kRaiseAfterBytes), 120s) == SinkVerdict::lower);
    CHECK_FALSE(bulk.raised());
    CHECK_FALSE(bulk.full(look(3000ms, 2 * kRaiseAfterBytes)));
    CHECK(bulk.full(look(3100ms, 3 * kRaiseAfterBytes)));
}

TEST_CASE("a lowered sink whose reader takes kResumeAfterBytes again has resumed, once per stop",
          "[drain]") {
    using splicer::plane::kResumeAfterBytes;
    DrainWatch watch;
    watch.tick(look(0ms, 1000), 120s);
    CHECK(watch.tick(look(kLowerAfter, 1000), 120s) == SinkVerdict::lower);
    // A trickle is not a resumed reader: still braked.
    CHECK(watch.tick(look(2000ms, 1000 + 4096), 120s) == SinkVerdict::moving);
    CHECK(watch.tick(look(3000ms, 1000 + kResumeAfterBytes - 1), 120s) == SinkVerdict::moving);
    CHECK(watch.tick(look(4000ms, 1000 + kResumeAfterBytes), 120s) == SinkVerdict::resumed);
    CHECK(watch.tick(look(5000ms, 1000 + 2 * kResumeAfterBytes), 120s) != SinkVerdict::resumed);
    // It stops again: lowered again, and resumed again, even if it took everything (idle).
    CHECK(watch.tick(look(6000ms, 1000 + 2 * kResumeAfterBytes), 120s) == SinkVerdict::lower);
    CHECK(watch.tick(look(7000ms, 1000 + 2 * kResumeAfterBytes), 120s) == SinkVerdict::waiting);
    CHECK(watch.tick(look(8000ms, 1000 + 3 * kResumeAfterBytes, false), 120s) ==
          SinkVerdict::resumed);
    CHECK(watch.tick(look(9000ms, 1000 + 3 * kResumeAfterBytes, false), 120s) ==
          SinkVerdict::idle);
}

TEST_CASE("a stop is dated from the reader's last progress, and the date outlives the resume",
          "[drain]") {
    // The reader_resumed line's stopped_ms (plane/reader_stops.h) is the resume's look minus
    // this: how long the reader took nothing, not how long the sink was lowered.
    DrainWatch watch;
    watch.tick(look(0ms, 0), 0s);
    CHECK(watch.tick(look(300ms, 4096), 0s) == SinkVerdict::moving);
    CHECK(watch.tick(look(1300ms, 4096), 0s) == SinkVerdict::lower);
    CHECK(watch.stopped_since() == kStart + 300ms);
    CHECK(watch.tick(look(2500ms, 4096 + (1ULL << 20)), 0s) == SinkVerdict::resumed);
    CHECK(watch.stopped_since() == kStart + 300ms);
}
