#include "plane/plane_factory.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "plane/copy_plane.h"
#include "plane/sockmap_plane.h"
#include "plane/splice_plane.h"
#include "selftest/sockmap_selftest.h"
#include "splicer/log.h"

namespace splicer::plane {
namespace {

std::string milliseconds(std::chrono::microseconds took) {
    const auto tenths = (took.count() + 50) / 100;
    return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10);
}

// A self-test's report: its first failure logged with its step and returned as the error,
// or one line saying it passed.
Result<void> judge_selftest(const Result<selftest::SelftestReport>& report) {
    if (!report) {
        return report.error();
    }
    std::chrono::microseconds steps_took{};
    for (const auto& step : report->steps) {
        steps_took += step.took;
    }
    if (const selftest::StepOutcome* failed = report->first_failure()) {
        log::warning("selftest_failed", {{"step", failed->name},
                                         {"detail", failed->detail},
                                         {"step_ms", milliseconds(failed->took)}});
        return Error{"self-test failed at step " + failed->name + ": " + failed->detail};
    }
    log::info("selftest", {{"result", "ok"},
                           {"steps", std::to_string(report->steps.size())},
                           {"load_ms", milliseconds(report->load_took)},
                           {"steps_ms", milliseconds(steps_took)}});
    return {};
}

// Every step of the self-test on `program` (the plane's own, not yet pinned, `load_took` to
// load), stopping at the first failure, which is logged with its step. Afterwards the
// program's maps and counters are as fresh as after a new load.
Result<void> run_selftest(bpf::SpliceProgram& program, std::chrono::microseconds load_took) {
    return judge_selftest(
        selftest::run_on_plane_program(program, load_took, selftest::StopAfter::first_failure));
}

using Planes = std::vector<std::unique_ptr<DataPlane>>;

// `workers` planes made by `make`.
template <typename Make>
Planes several(std::uint32_t workers, Make make) {
    Planes planes;
    for (std::uint32_t i = 0; i < std::max<std::uint32_t>(workers, 1); ++i) {
        planes.push_back(make());
    }
    return planes;
}

// At `splicer upgrade`: the self-test on an instance of its own (it pairs and clears, which
// the old process's maps must never see), then the program loaded onto the old maps.
Result<Planes> reuse_sockmap(bpf::PinDir& pins, std::uint32_t max_connections,
                             std::uint32_t workers, bpf::ReusedMaps reuse) {
    const bpf::LoadOptions options = sockmap_load_options(max_connections);
    if (auto proven = judge_selftest(
            selftest::run_sockmap_selftest(options, selftest::StopAfter::first_failure));
        !proven) {
        return proven.error();
    }
    const std::uint32_t reused_sockets = reuse.max_sockets;
    auto program = bpf::SpliceProgram::load_reusing(std::move(reuse), options);
    if (!program) {
        return program.error();
    }
    // Sized by the old process: a changed max_connections takes effect at a restart.
    log::info("sockmap_maps_reused",
              {{"max_sockets", std::to_string(reused_sockets)},
               {"configured_sockets", std::to_string(options.max_sockets)}});
    return make_sockmap_planes(std::move(program).value(), pins, workers);
}

Result<Planes> try_sockmap(bpf::PinDir* pins, std::uint32_t max_connections,
                           std::uint32_t workers, std::optional<bpf::ReusedMaps> reuse) {
    if (pins == nullptr) {
        return Error{"no usable pin dir (the no_pins line says why)"};
    }
    if (reuse) {
        return reuse_sockmap(*pins, max_connections, workers, std::move(*reuse));
    }
    // Loading the program proves nothing about the kernel's sockmap path (DESIGN.md kernel
    // fact 9): it is trusted only once the self-test passed on this kernel. The self-test
    // runs on the plane's own program, loaded once: before its maps are pinned (no other
    // process sees them yet) and before any client's socket enters them, and before the
    // privilege drop (loading BPF needs CAP_BPF and CAP_NET_ADMIN).
    const auto start = std::chrono::steady_clock::now();
    auto program = bpf::SpliceProgram::load(sockmap_load_options(max_connections));
    if (!program) {
        return program.error();
    }
    const auto load_took = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - start);
    if (auto proven = run_selftest(*program, load_took); !proven) {
        return proven.error();
    }
#ifdef SPLICER_TEST_HOOKS
    // Test builds only (CMake Debug): tests/privileged/test_verdict_edit_failure.cpp makes
    // every overlap trim of the verdict fail, to see a pair end with RSTs on real sockets.
    // Such a verdict fails the self-test by design, so it replaces the proven program after
    // the self-test: a second load, in that test only.
    if (std::getenv("SPLICER_TEST_FAIL_VERDICT_TRIM") != nullptr) {
        bpf::LoadOptions failing = sockmap_load_options(max_connections);
        failing.fail_trims = true;
        program = bpf::SpliceProgram::load(failing);
        if (!program) {
            return program.error();
        }
    }
#endif
    return make_sockmap_planes(std::move(program).value(), *pins, workers);
}

}  // namespace

Result<Planes> make_planes(config::SpliceMode mode, bpf::PinDir* pins,
                           std::uint32_t max_connections, std::uint32_t workers,
                           std::optional<bpf::ReusedMaps> reuse) {
    switch (mode) {
        case config::SpliceMode::copy: return several(workers, make_copy_plane);
        case config::SpliceMode::splice: return several(workers, make_splice_plane);
        case config::SpliceMode::sockmap: {
            auto sockmap = try_sockmap(pins, max_connections, workers, std::move(reuse));
            if (!sockmap) {
                return sockmap.error().with_context("sockmap");
            }
            return sockmap;
        }
        case config::SpliceMode::automatic: {
            // scripts/bench on Linux 6.18 (README, Performance): sockmap matches or beats
            // splice on one bulk stream at half the daemon CPU per GB, and wins new TLS
            // connections, keep-alive and ping-pong; splice stays the plane where BPF is not
            // available (no root, no bpffs, an older kernel).
            const bool reusing = reuse.has_value();
            auto sockmap = try_sockmap(pins, max_connections, workers, std::move(reuse));
            if (!sockmap && reusing) {
                // The old process's pairs are on sockmap: a new process on another plane
                // could adopt none of them. An upgrade keeps the plane or fails.
                return sockmap.error().with_context("sockmap (upgrade onto the old maps)");
            }
            if (sockmap) {
                log::notice("plane_choice", {{"plane", "sockmap"},
                                             {"reason", "auto: BPF loaded, self-test passed"}});
                return sockmap;
            }
            log::notice("plane_choice", {{"plane", "splice"},
                                         {"reason", "auto: sockmap unavailable"},
                                         {"error", sockmap.error().message}});
            return several(workers, make_splice_plane);
        }
    }
    return Error{"unknown splice mode"};
}

}  // namespace splicer::plane
