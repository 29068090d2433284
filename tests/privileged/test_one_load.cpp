// One load of bpf/splice.bpf.c per daemon start: the start-up self-test runs on the very
// program and maps the sockmap plane then pins and uses (plane/plane_factory.cpp), instead of
// loading an instance of its own first. Observed in the kernel, not in the daemon's words:
// perf's BPF load records (support/bpf_load_watch.h) count the programs the kernel loaded for
// the daemon's process, the self-test's included even though it would be unloaded again.

#include <bpf/bpf.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <numeric>
#include <sstream>
#include <string>

#include "daemon_test_common.h"
#include "splicer/splice_program.h"
#include "support/bpf_load_watch.h"

namespace test = splicer::test;
using namespace std::chrono_literals;

namespace {

std::string hex(const std::array<std::uint8_t, 8>& tag) {
    std::ostringstream text;
    for (const std::uint8_t byte : tag) {
        text << std::hex << (byte >> 4) << (byte & 0xf);
    }
    return text.str();
}

// Every counter of the verdict summed: zero when no skb ran through it.
std::uint64_t counter_total(const splicer::bpf::Counters& counters) {
    std::uint64_t total = counters.no_peer;
    for (const auto* field :
         {&counters.redirected_skbs, &counters.redirected_bytes, &counters.passed_skbs,
          &counters.passed_bytes, &counters.limit_trips, &counters.room_trips,
          &counters.peer_missing, &counters.redirect_failed, &counters.bare_fins,
          &counters.overlap_skbs, &counters.overlap_bytes, &counters.overlap_failed,
          &counters.urgent_bytes, &counters.urgent_passed, &counters.edit_failed}) {
        total = std::accumulate(field->begin(), field->end(), total);
    }
    return total;
}

}  // namespace

TEST_CASE(
    "one load: a daemon start with the self-test loads the verdict program once, and its "
    "pinned maps and counters start empty",
    "[selftest][oneload]") {
    test::require_root();
    const std::string plane = GENERATE("sockmap", "auto");
    CAPTURE(plane);
    const test::BpfLoadWatch watch;  // before the daemon is spawned: it inherits the watch
    test::DaemonOptions options;
    options.binary = SPLICER_BINARY;
    options.config_text = test::snikket_config(test::unserved_snikket_ports());
    options.splice_mode = plane;
    test::DaemonProcess daemon(options);
    REQUIRE(daemon.wait_ready(15s));
    INFO(daemon.log_tail());
    const auto proven = daemon.wait_for_log("selftest", {}, 1s);
    REQUIRE(proven.has_value());
    CHECK(proven->get("result") == "ok");

    // The plane's program is the live splice_verdict among the daemon's loads; a second load
    // of the same object has the same tag (the tag hashes the instructions, map references
    // zeroed), loaded and unloaded again or not.
    std::vector<test::BpfProgramLoad> loads;
    for (const auto& load : watch.loads()) {
        if (load.pid == daemon.pid()) {
            loads.push_back(load);
        }
    }
    std::vector<std::array<std::uint8_t, 8>> live_verdicts;
    for (const auto& load : loads) {
        test::BpfProgramIdentity identity;
        if (test::live_program_identity(load.id, identity) && identity.name == "splice_verdict") {
            live_verdicts.push_back(identity.tag);
        }
    }
    REQUIRE(live_verdicts.size() == 1);
    const auto verdict_loads = std::count_if(loads.begin(), loads.end(), [&](const auto& load) {
        return load.tag == live_verdicts.front();
    });
    INFO(loads.size() << " programs loaded by the daemon, " << verdict_loads
                      << " of them splice_verdict (tag " << hex(live_verdicts.front()) << ")");
    CHECK(verdict_loads == 1);

    // The self-test's pairs left the pinned maps, and its bytes the counters `splicer stats`
    // reads: both start at zero as with a program of their own.
    for (const auto& [path, entries] : test::keyed_map_entries(daemon.pin_dir())) {
        CAPTURE(path);
        CHECK(entries == 0);
    }
    const splicer::UniqueFd counters(bpf_obj_get((daemon.pin_dir() + "/counters").c_str()));
    REQUIRE(counters);
    const auto read = splicer::bpf::read_counters(counters.get());
    REQUIRE(read);
    CHECK(counter_total(*read) == 0);
    test::stop_daemon(daemon);
}
