// The sockmap self-test (userspace/selftest/, DESIGN.md kernel fact 9): `splicer selftest`
// on this kernel, the start-up run that keeps `auto` off sockmap when a step fails, and the
// error that stops a start where sockmap was asked for by name.
//
// A kernel path that fails for real: splicer_lose_passed_bytes (tests/CMakeLists.txt) is the
// daemon built with a verdict that drops every byte it should pass up, loaded through the
// same SpliceProgram code, as a kernel whose pass path lost bytes would behave. Everything
// else in it (the self-test, the plane choice, the start-up) is the production code.

#include <bpf/bpf.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <regex>
#include <sstream>
#include <string>

#include "daemon_test_common.h"
#include "selftest/sockmap_selftest.h"
#include "splicer/splice_program.h"

namespace test = splicer::test;
namespace selftest = splicer::selftest;
using namespace std::chrono_literals;

namespace {

// The lines of `splicer selftest` output whose first word is `step` (name, status, time).
struct PrintedStep {
    std::string status;  // "ok" | "FAILED"
    double milliseconds = -1;
};

std::map<std::string, PrintedStep> printed_steps(const std::string& output) {
    static const std::regex line(R"(^(\w+) +(ok|FAILED) +([0-9]+\.[0-9]) ms$)");
    std::map<std::string, PrintedStep> steps;
    std::istringstream lines(output);
    std::string text;
    std::smatch match;
    while (std::getline(lines, text)) {
        if (std::regex_match(text, match, line)) {
            steps[match[1]] = {match[2], std::stod(match[3])};
        }
    }
    return steps;
}

std::unique_ptr<test::DaemonProcess> start_lose_passed_bytes(const std::string& plane) {
    test::DaemonOptions options;
    options.binary = SPLICER_LOSE_PASSED_BYTES_BINARY;
    options.config_text = test::snikket_config(test::unserved_snikket_ports());
    options.splice_mode = plane;
    return std::make_unique<test::DaemonProcess>(options);
}

}  // namespace

TEST_CASE("selftest: splicer selftest prints every step ok with its time and exits 0",
          "[selftest]") {
    test::require_root();
    const auto result = test::run_command(std::string(SPLICER_BINARY) + " selftest 2>&1");
    INFO(result.output);
    REQUIRE(result.exit_code == 0);
    const auto steps = printed_steps(result.output);
    std::vector<std::string> expected = selftest::step_names();
    expected.insert(expected.begin(), "load");
    for (const std::string& name : expected) {
        CAPTURE(name);
        REQUIRE(steps.count(name) == 1);
        CHECK(steps.at(name).status == "ok");
        CHECK(steps.at(name).milliseconds >= 0);
    }
    CHECK(steps.size() == expected.size());
    WARN("splicer selftest on this kernel:\n" << result.output);
}

TEST_CASE(
    "selftest: the steps move bytes both by redirect and through the pass/copy path, "
    "and leave the maps empty",
    "[selftest]") {
    test::require_root();
    auto program = splicer::bpf::SpliceProgram::load({.max_sockets = 16});
    REQUIRE(program);
    const auto report = selftest::run_steps(*program, selftest::StopAfter::all_steps);
    for (const auto& step : report.steps) {
        INFO(step.name << ": " << (step.ok ? "ok" : step.detail) << " in " << step.took.count()
                       << " us");
        CHECK(step.ok);
        CHECK(step.took < selftest::kStepDeadline);
    }
    REQUIRE(report.steps.size() == selftest::step_names().size());
    auto counters = program->read_counters();
    REQUIRE(counters);
    CHECK(counters->redirected_bytes[SPLICER_DIR_CLIENT_TO_BACKEND] > 0);
    CHECK(counters->redirected_bytes[SPLICER_DIR_BACKEND_TO_CLIENT] > 0);
    // The flow-control and readiness steps make the verdict pass.
    CHECK(counters->passed_bytes[SPLICER_DIR_CLIENT_TO_BACKEND] > 0);
    // Every pair left the sockhash and the link maps.
    for (const int map_fd :
         {program->sockets_map_fd(), program->peers_map_fd(), program->copied_map_fd()}) {
        splicer_cookie key = 0;
        CHECK(bpf_map_get_next_key(map_fd, nullptr, &key) != 0);
    }
}

TEST_CASE(
    "selftest: a verdict that loses passed bytes makes splicer selftest print the "
    "failed step and exit 1",
    "[selftest]") {
    test::require_root();
    const auto started = std::chrono::steady_clock::now();
    const auto result =
        test::run_command(std::string(SPLICER_LOSE_PASSED_BYTES_BINARY) + " selftest 2>&1");
    const auto took = std::chrono::steady_clock::now() - started;
    INFO(result.output);
    CHECK(result.exit_code == 1);
    const auto steps = printed_steps(result.output);
    REQUIRE(steps.count("flow_control_pass") == 1);
    CHECK(steps.at("flow_control_pass").status == "FAILED");
    // Bytes that never come fail the step at its deadline, they do not hang it.
    CHECK(steps.at("flow_control_pass").milliseconds <
          static_cast<double>(selftest::kStepDeadline.count()) + 250);
    // Six steps of at most 2 s each (two fail at their deadline), and the load.
    CHECK(took < 15s);
}

TEST_CASE("selftest: auto runs the self-test at start and takes sockmap when it passes",
          "[selftest]") {
    test::require_root();
    test::DaemonOptions options;
    options.binary = SPLICER_BINARY;
    options.config_text = test::snikket_config(test::unserved_snikket_ports());
    options.splice_mode = "auto";
    auto daemon = std::make_unique<test::DaemonProcess>(options);
    REQUIRE(daemon->wait_ready(15s));
    const auto passed = daemon->wait_for_log("selftest", {}, 1s);
    INFO(daemon->log_tail());
    REQUIRE(passed.has_value());
    CHECK(passed->get("result") == "ok");
    const auto choice = daemon->wait_for_log("plane_choice", {}, 1s);
    REQUIRE(choice.has_value());
    CHECK(choice->get("plane") == "sockmap");
    WARN("start-up self-test: " << passed->raw);
    test::stop_daemon(*daemon);
}

TEST_CASE("selftest: auto falls back to splice when a step fails, the step logged", "[selftest]") {
    test::require_root();
    auto daemon = start_lose_passed_bytes("auto");
    const bool ready = daemon->wait_ready(15s);
    INFO(daemon->log_tail());
    REQUIRE(ready);
    const auto failed = daemon->wait_for_log("selftest_failed", {}, 1s);
    REQUIRE(failed.has_value());
    CHECK(failed->level() == "warning");
    // flow_control_pass on an idle host; an earlier step where load made the verdict pass.
    const auto names = selftest::step_names();
    CHECK(std::find(names.begin(), names.end(), failed->get("step")) != names.end());
    CHECK_FALSE(failed->get("detail").empty());
    const auto choice = daemon->wait_for_log("plane_choice", {}, 1s);
    REQUIRE(choice.has_value());
    CHECK(choice->get("plane") == "splice");
    CHECK(choice->get("error").find("self-test failed at step " +
                                    std::string(failed->get("step"))) != std::string::npos);
    const auto ready_line = daemon->wait_for_log("ready", {}, 1s);
    REQUIRE(ready_line.has_value());
    CHECK(ready_line->get("plane") == "splice");
    // Nothing of the sockmap plane was loaded or pinned: only the daemon's own counters map.
    const auto pinned = test::pinned_objects(daemon->pin_dir());
    INFO("pinned: " << pinned.size());
    for (const auto& object : pinned) {
        CHECK(object.path.find("sockets") == std::string::npos);
    }
    test::stop_daemon(*daemon);
}

TEST_CASE("selftest: with splice_mode sockmap a failing step stops the start, naming it",
          "[selftest]") {
    test::require_root();
    auto daemon = start_lose_passed_bytes("sockmap");
    const auto status = daemon->stop(10s, 0);
    INFO(daemon->log_tail());
    const auto fatal = daemon->wait_for_log("fatal", {}, 1s);
    REQUIRE(fatal.has_value());
    const auto failed = daemon->wait_for_log("selftest_failed", {}, 0ms);
    REQUIRE(failed.has_value());
    CHECK(fatal->get("error").find("self-test failed at step " +
                                   std::string(failed->get("step"))) != std::string::npos);
    REQUIRE(daemon->exit_status().has_value());
    CHECK(*daemon->exit_status() == 1);
    CHECK_FALSE(daemon->wait_for_log("ready", {}, 0ms).has_value());
    (void)status;
}

// Run by hand: build/debug/tests/splicer_privileged_tests "[.selftest-bench]". What each way
// of running the self-test costs at start: an instance of its own (one more verifier load)
// against the daemon's own instance (no load; its counters reset afterwards).
TEST_CASE("selftest bench: load and steps", "[.selftest-bench]") {
    test::require_root();
    constexpr int kRounds = 5;
    using SelftestClock = std::chrono::steady_clock;
    auto ms = [](SelftestClock::duration d) {
        return std::chrono::duration<double, std::milli>(d).count();
    };
    for (int round = 0; round < kRounds; ++round) {
        auto start = SelftestClock::now();
        auto small = splicer::bpf::SpliceProgram::load({.max_sockets = 16});
        const auto small_load = SelftestClock::now() - start;
        REQUIRE(small);
        start = SelftestClock::now();
        auto production = splicer::bpf::SpliceProgram::load({.max_sockets = 32768});
        const auto production_load = SelftestClock::now() - start;
        REQUIRE(production);
        start = SelftestClock::now();
        const auto report = selftest::run_steps(*production, selftest::StopAfter::all_steps);
        const auto steps = SelftestClock::now() - start;
        CHECK(report.ok());
        WARN("load 16 sockets " << ms(small_load) << " ms, load 32768 sockets "
                                << ms(production_load) << " ms, steps " << ms(steps) << " ms");
    }
}
