// When an old process's loop exports its connections again during an upgrade
// (daemon/connection_handover.h): the rule alone, as a table.

#include <catch2/catch.hpp>

#include "daemon/connection_handover.h"

using splicer::daemon::export_again;
using splicer::daemon::kExportRounds;
using splicer::handoff::ExportOutcome;

TEST_CASE("an old loop exports again while something may still move, within its rounds",
          "[handover]") {
    const ExportOutcome nothing_left{};
    const ExportOutcome probing_left{.batch = {}, .left = 2, .failed = 0};
    // Its accepts' cancel not yet through: a client it takes from its queue after them
    // (EventLoop::accept_left_after_handover) is one more to move.
    const ExportOutcome accepts_pending{
        .batch = {}, .left = 0, .failed = 0, .accepts_pending = true};

    CHECK_FALSE(export_again(nothing_left, true, false, 1));
    CHECK(export_again(probing_left, true, false, 1));
    CHECK(export_again(accepts_pending, true, false, 1));
    CHECK(export_again(accepts_pending, true, false, kExportRounds - 1));
    // Never past the last round, never once a batch was not taken, never at a stop.
    CHECK_FALSE(export_again(accepts_pending, true, false, kExportRounds));
    CHECK_FALSE(export_again(probing_left, true, false, kExportRounds));
    CHECK_FALSE(export_again(accepts_pending, false, false, 1));
    CHECK_FALSE(export_again(probing_left, false, false, 1));
    CHECK_FALSE(export_again(accepts_pending, true, true, 1));
    CHECK_FALSE(export_again(probing_left, true, true, 1));
}
