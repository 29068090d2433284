// The sockmap plane's copy and EOF decisions (plane/sockmap_steps.h), one row per situation.
// The expected steps are what plane/sockmap_plane.cpp's copy_round and try_propagate_eof did
// before the decisions had their own module, so a change of behaviour shows here.

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <optional>

#include "plane/sockmap_steps.h"

using splicer::plane::copy_step;
using splicer::plane::CopyObservation;
using splicer::plane::CopyStep;
using splicer::plane::eof_step;
using splicer::plane::EofObservation;
using splicer::plane::EofStep;
using splicer::plane::owed_step;
using splicer::plane::OwedObservation;
using splicer::plane::OwedStep;

namespace {

constexpr int kRoundsPerTurn = 8;

// Rows are positional, one column per field (named above each table). kUnasked: not looked
// at yet.
constexpr std::optional<bool> kUnasked = std::nullopt;

CopyObservation copy_seen(bool holding, int rounds, std::optional<bool> absorbed,
                          std::optional<bool> sink_broken) {
    CopyObservation seen;
    seen.holding = holding;
    seen.rounds = rounds;
    seen.absorbed = absorbed;
    seen.sink_broken = sink_broken;
    return seen;
}

EofObservation eof_seen(std::optional<bool> may_propagate, std::optional<bool> progressed,
                        std::optional<bool> sink_broken, bool stalled, bool copying,
                        bool passed_uncopied) {
    EofObservation seen;
    seen.may_propagate = may_propagate;
    seen.progressed = progressed;
    seen.sink_broken = sink_broken;
    seen.stalled = stalled;
    seen.copying = copying;
    seen.passed_uncopied = passed_uncopied;
    return seen;
}

OwedObservation owed_seen(bool owed, bool copying, bool idle_before) {
    OwedObservation seen;
    seen.owed = owed;
    seen.copying = copying;
    seen.idle_before = idle_before;
    return seen;
}

}  // namespace

TEST_CASE("sockmap copy step follows its table", "[sockmap_steps]") {
    // copy_seen(holding, rounds, absorbed, sink_broken)
    const auto [situation, seen, expected] =
        GENERATE(table<const char*, CopyObservation, CopyStep>({
            {"empty buffer, first round: read", copy_seen(false, 0, kUnasked, kUnasked),
             CopyStep::take},
            {"empty buffer, rounds left: read", copy_seen(false, 7, kUnasked, kUnasked),
             CopyStep::take},
            {"empty buffer, turn used up: yield", copy_seen(false, 8, kUnasked, kUnasked),
             CopyStep::yield},
            {"buffer in hand: ask the sink first", copy_seen(true, 8, kUnasked, kUnasked),
             CopyStep::check_absorbed},
            {"every redirect absorbed: send", copy_seen(true, 0, true, kUnasked), CopyStep::send},
            {"not absorbed: is the sink broken", copy_seen(true, 0, false, kUnasked),
             CopyStep::check_sink},
            {"not absorbed, sink alive: wait", copy_seen(true, 0, false, false), CopyStep::wait},
            {"not absorbed, sink broken: abort", copy_seen(true, 0, false, true), CopyStep::abort},
        }));
    INFO(situation);
    CHECK(copy_step(seen, kRoundsPerTurn) == expected);
}

TEST_CASE("sockmap EOF step follows its table", "[sockmap_steps]") {
    // eof_seen(may_propagate, progressed, sink_broken, stalled, copying, passed_uncopied)
    const auto [situation, seen, expected] = GENERATE(table<const char*, EofObservation, EofStep>({
        {"first look: may the FIN go", eof_seen(kUnasked, kUnasked, kUnasked, false, false, false),
         EofStep::check_may},
        {"everything absorbed: propagate", eof_seen(true, kUnasked, kUnasked, false, false, false),
         EofStep::propagate},
        {"may propagate wins over a late pass",
         eof_seen(true, kUnasked, kUnasked, false, false, true), EofStep::propagate},
        {"bytes still ahead: did the sink move",
         eof_seen(false, kUnasked, kUnasked, false, false, false), EofStep::check_progress},
        {"sink moved: wait", eof_seen(false, true, kUnasked, false, false, false), EofStep::wait},
        {"sink moved after a long wait: not stalled",
         eof_seen(false, true, kUnasked, true, false, false), EofStep::wait},
        {"sink moved, a late pass uncopied: copy it",
         eof_seen(false, true, kUnasked, false, false, true), EofStep::copy_late_pass},
        {"sink moved, late pass already being copied: wait",
         eof_seen(false, true, kUnasked, false, true, true), EofStep::wait},
        {"sink still: is it broken", eof_seen(false, false, kUnasked, false, false, false),
         EofStep::check_sink},
        {"sink still and broken: abort", eof_seen(false, false, true, false, false, true),
         EofStep::abort_sink},
        {"sink still, alive, within the limit: wait",
         eof_seen(false, false, false, false, false, false), EofStep::wait},
        {"sink still, alive, past the limit: stalled",
         eof_seen(false, false, false, true, false, true), EofStep::abort_stalled},
        {"sink still, alive, late pass: copy it", eof_seen(false, false, false, false, false, true),
         EofStep::copy_late_pass},
    }));
    INFO(situation);
    CHECK(eof_step(seen) == expected);
}

TEST_CASE("sockmap owed step follows its table", "[sockmap_steps]") {
    // owed_seen(owed, copying, idle_before)
    const auto [situation, seen, expected] =
        GENERATE(table<const char*, OwedObservation, OwedStep>({
            {"every pass copied: nothing to do", owed_seen(false, false, false), OwedStep::none},
            {"every pass copied, stale idle mark: nothing to do", owed_seen(false, false, true),
             OwedStep::none},
            {"owed, copy under way: its own waits apply", owed_seen(true, true, false),
             OwedStep::watch},
            {"owed, copy under way after an idle look: still the copy's",
             owed_seen(true, true, true), OwedStep::watch},
            {"owed, no copy, first look: could be a poll about to complete",
             owed_seen(true, false, false), OwedStep::watch},
            {"owed, no copy for a whole interval: peek at the source", owed_seen(true, false, true),
             OwedStep::peek},
        }));
    INFO(situation);
    CHECK(owed_step(seen) == expected);
}

TEST_CASE("sockmap recheck interval: short for copies, backing off for EOFs and deferred polls",
          "[sockmap_steps]") {
    using splicer::plane::recheck_interval;
    using namespace std::chrono_literals;
    // A copy waits on the timer: always the short interval.
    for (std::uint8_t waits = 0; waits < 10; ++waits) {
        CHECK(recheck_interval(false, waits) == 2ms);
    }
    // No copy (EOFs, polls re-armed later): 2, 4, 8, then 16 ms for as long as they wait.
    CHECK(recheck_interval(true, 0) == 2ms);
    CHECK(recheck_interval(true, 1) == 4ms);
    CHECK(recheck_interval(true, 2) == 8ms);
    CHECK(recheck_interval(true, 3) == 16ms);
    CHECK(recheck_interval(true, 200) == 16ms);
}
