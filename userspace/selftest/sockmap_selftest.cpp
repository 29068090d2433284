#include "selftest/sockmap_selftest.h"

#include <algorithm>

#include "selftest/steps.h"

namespace splicer::selftest {
namespace {

struct Step {
    const char* name;
    Result<void> (*run)(bpf::SpliceProgram&, Clock::time_point);
};

constexpr Step kSteps[] = {
    {"queued_before_insertion", step_queued_before_insertion},
    {"pipelined_behind_hello", step_pipelined_behind_hello},
    {"byte_exact_both_ways", step_byte_exact_both_ways},
    {"half_close", step_half_close},
    {"flow_control_pass", step_flow_control_pass},
    {"readiness_and_fionread", step_readiness_and_fionread},
};

// Pairs one step holds at once (two sockets each), with room to spare.
constexpr std::uint32_t kSelftestSockets = 16;

std::chrono::microseconds since(Clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
}

}  // namespace

bool SelftestReport::ok() const {
    return first_failure() == nullptr;
}

const StepOutcome* SelftestReport::first_failure() const {
    const auto failed =
        std::find_if(steps.begin(), steps.end(), [](const StepOutcome& step) { return !step.ok; });
    return failed == steps.end() ? nullptr : &*failed;
}

std::vector<std::string> step_names() {
    std::vector<std::string> names;
    for (const Step& step : kSteps) {
        names.emplace_back(step.name);
    }
    return names;
}

SelftestReport run_steps(bpf::SpliceProgram& program, StopAfter stop) {
    SelftestReport report;
    for (const Step& step : kSteps) {
        const auto start = Clock::now();
        auto result = step.run(program, start + kStepDeadline);
        report.steps.push_back({.name = step.name,
                                .ok = result.has_value(),
                                .detail = result ? std::string() : result.error().message,
                                .took = since(start)});
        if (!result && stop == StopAfter::first_failure) {
            break;
        }
    }
    return report;
}

Result<SelftestReport> run_sockmap_selftest(bpf::LoadOptions options, StopAfter stop) {
    options.max_sockets = kSelftestSockets;
    const auto start = Clock::now();
    auto program = bpf::SpliceProgram::load(options);
    if (!program) {
        return program.error().with_context("sockmap self-test");
    }
    const auto load_took = since(start);
    SelftestReport report = run_steps(*program, stop);
    report.load_took = load_took;
    return report;
}

Result<SelftestReport> run_on_plane_program(bpf::SpliceProgram& program,
                                            std::chrono::microseconds load_took, StopAfter stop) {
    SelftestReport report = run_steps(program, stop);
    report.load_took = load_took;
    // Every step's pairs are closed by now (LoopbackPair owns them), so no verdict runs.
    if (auto cleared = program.clear(); !cleared) {
        return cleared.error().with_context("sockmap self-test: clearing its traces");
    }
    return report;
}

}  // namespace splicer::selftest
