#pragma once
// A self-test of the sockmap data plane on the running kernel (DESIGN.md kernel fact 9):
// stable kernels have shipped sockmap regressions (lost readiness wake-ups, FIONREAD reading
// 0 on a sockmap socket, stream-verdict EOF bugs), and loading the program proves none of
// them absent. Each step makes fresh loopback connections, splices them through the verdict
// program and checks one thing the data plane relies on, within its own deadline.
//
// At start-up it runs on the daemon's own instance of bpf/splice.bpf.c, the very program and
// maps the sockmap plane then pins and serves with, before they are pinned or hold a client's
// socket, and clears what it left in them (run_on_plane_program): one verifier load per start
// instead of two (README, "The sockmap self-test", has the figures). `splicer selftest` loads
// an instance of its own (run_sockmap_selftest): it needs no pin dir and never touches a
// running daemon's maps.

#include <chrono>
#include <string>
#include <vector>

#include "splicer/result.h"
#include "splicer/splice_program.h"

namespace splicer::selftest {

// Each step fails at this deadline at the latest: a lost wake-up or byte ends the step, it
// never hangs the start. A passing step takes 2-35 ms (debug build, 6.18; 130 ms under ASan
// at load 17); the wide margin is for a loaded host (CI runs two sanitizer tests per core),
// where a step that overran would keep `auto` off sockmap for nothing and stop a start that
// asked for sockmap. Only a failing kernel pays it.
inline constexpr std::chrono::milliseconds kStepDeadline{2000};

struct StepOutcome {
    std::string name;  // e.g. "queued_before_insertion"
    bool ok = false;
    std::string detail;  // why it failed (empty when ok)
    std::chrono::microseconds took{};
};

struct SelftestReport {
    std::chrono::microseconds load_took{};  // loading the self-test's own program instance
    std::vector<StepOutcome> steps;

    [[nodiscard]] bool ok() const;
    // The first failed step, or null.
    [[nodiscard]] const StepOutcome* first_failure() const;
};

enum class StopAfter { first_failure, all_steps };

// The step names, in the order they run.
std::vector<std::string> step_names();

// Runs the steps on a loaded program. The pairs it makes leave the maps again; its bytes do
// go into the program's counters (run_on_plane_program sets them back to zero).
SelftestReport run_steps(bpf::SpliceProgram& program, StopAfter stop);

// Loads an instance of the verdict with `options` (its max_sockets lowered to what the steps
// need) and runs the steps. An error only when the program does not load.
Result<SelftestReport> run_sockmap_selftest(bpf::LoadOptions options, StopAfter stop);

// Runs the steps on `program`, loaded by the caller for its own use (`load_took` is reported
// as the report's), then empties its maps and zeroes its counters again (SpliceProgram::clear),
// so the caller starts from a program as fresh as a new load. Only before the program serves
// anything. An error only when clearing fails (the program is then not to be used).
Result<SelftestReport> run_on_plane_program(bpf::SpliceProgram& program,
                                            std::chrono::microseconds load_took, StopAfter stop);

}  // namespace splicer::selftest
