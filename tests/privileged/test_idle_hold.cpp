// Issue 15's hold test: at least 20,000 spliced idle connections on each data plane, the
// memory each one costs (the daemon's RSS, the machine's slab and TCP memory), bounds on it,
// and every connection still carrying bytes after the hold (each echoes a line of its own).
// The README's "Scaling" projection for 100k and 1M connections is made from its figures.
//
// One daemon holds two fds per connection, and RLIMIT_NOFILE is per process: the test raises
// the hard limit where it may (CAP_SYS_RESOURCE), and where it may not (this machine: hard
// limit 20,000, no CAP_SYS_RESOURCE even as root) it spreads the connections over as many
// daemons as needed ("shards", each with its own echo backend and client process), all on
// the same plane and held at once, so the figures are per connection whatever the split.
// The clients are tools/bench/idle_holder processes for the same reason: 20,000 client fds do
// not fit in this process.
//
// Machine-wide memory (slab, TCP) is read before and after: the test is tagged [serial] and
// runs alone in CTest (tests/CMakeLists.txt).

#include <sys/resource.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <thread>

#include "daemon_test_common.h"
#include "support/echo_process.h"
#include "support/idle_holder.h"
#include "support/kernel_memory.h"
#include "support/log_lines.h"

namespace test = splicer::test;
using namespace std::chrono_literals;

namespace {

// Issue 15: "at least 20,000 here".
constexpr std::size_t kConnections = 20'000;
// Held by the daemon itself beyond its connections (limits/fd_limit.h kFixedFds) and the
// splice plane's pipe pool for this test: idle connections hold no pipe, the opening echoes
// take one for a moment.
constexpr std::uint64_t kDaemonFixedFds = 256;
constexpr std::uint32_t kSplicePipes = 64;
// Connections opened, proved and closed through each daemon before the baseline, so
// allocator pools, io_uring and slab caches already have their working size.
constexpr std::size_t kWarmUp = 200;
// Past the last connection opened: longer than the probe timeout (1 s), connect_timeout
// (2 s) and the daemon's once-a-second counter publication and heap trim; the first
// connections have been idle since the opening began.
constexpr auto kHold = 4s;

// Bounds per connection, with margins over what this machine measured (README "Scaling";
// the WARN lines give each run's figures) that a regression of the kind that matters fails:
// a buffer, a pipe or a page held per idle connection. Daemon RSS measured 1.0-1.2 KiB on
// every plane: the per-connection records (1,104 B each), made as connections arrive
// since `workers` (daemon/slab.h; 47 B while the slab made them all at start, inside the
// baseline), and the loop's bookkeeping. The copy plane holds its buffers only while bytes
// are in them (8.3 KiB when each connection kept two 64 KiB buffers). Kernel slab is the
// machine's for the connection's four sockets (client, the daemon's two, the backend's)
// with their inodes, files, dentries, epoll and io_uring entries and psocks: 20-22 KiB
// measured, of which 9.4 KiB are the client's and the backend's (the same holder straight
// to the echo server). TCP memory of idle sockets: 0 measured.
struct Bounds {
    std::uint64_t daemon_rss;
    std::uint64_t kernel_slab;
    std::uint64_t kernel_tcp;
};
Bounds bounds_for(const std::string& plane) {
#ifdef __SANITIZE_ADDRESS__
    // (scripts/test runs this test in the debug build only, tag [figures]: this bound is for
    // an ASan build run by hand.) ASan's allocator keeps redzones and a quarantine, fills the
    // first 4 KiB of each allocation and keeps shadow memory: measured 1.8 KiB on sockmap and
    // splice. A looser bound still catches a buffer touched per idle connection.
    const std::uint64_t rss = 8 * 1024;
#else
    const std::uint64_t rss = 2 * 1024;
#endif
    const std::uint64_t slab = plane == "sockmap" ? 32 * 1024 : 28 * 1024;
    return {.daemon_rss = rss, .kernel_slab = slab, .kernel_tcp = 1024};
}

// Four TCP socket structs alone are 9.6 KiB (2.4 KiB each, slab "TCP"): below 8 KiB
// the slab reading did not see the connections (wrong file, wrong units).
constexpr std::uint64_t kLeastKernelSlab = 8 * 1024;

// Raises this process's hard RLIMIT_NOFILE to `wanted` where CAP_SYS_RESOURCE allows (children
// inherit it), and the soft limit to the hard one; returns the hard limit in force.
std::uint64_t raise_hard_fd_limit(std::uint64_t wanted) {
    rlimit limit{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &limit) == 0);
    if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < wanted) {
        rlimit raised{.rlim_cur = wanted, .rlim_max = wanted};
        if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
            limit = raised;
        }
    }
    test::raise_fd_limit(limit.rlim_max);
    return limit.rlim_max == RLIM_INFINITY ? wanted : limit.rlim_max;
}

// How the connections are spread over daemons so that each fits the fd hard limit.
struct Split {
    std::size_t shards = 1;
    std::size_t per_shard = 0;
    std::uint32_t max_connections = 0;  // each daemon's, with room for the warm-up's stragglers
};
Split split_for(std::uint64_t hard_limit, const std::string& plane) {
    constexpr std::uint64_t kSlack = 64;
    const std::uint64_t pipe_fds = plane == "splice" ? 2ULL * kSplicePipes : 0;
    REQUIRE(hard_limit > kDaemonFixedFds + pipe_fds + 4 * kSlack);
    const std::uint64_t fitting = (hard_limit - kDaemonFixedFds - pipe_fds) / 2 - kSlack;
    Split split;
    split.shards = static_cast<std::size_t>((kConnections + fitting - 1) / fitting);
    split.per_shard = (kConnections + split.shards - 1) / split.shards;
    split.max_connections = static_cast<std::uint32_t>(split.per_shard + kSlack);
    return split;
}

std::string shard_config(const std::string& plane, const Split& split, std::uint16_t listen,
                         std::uint16_t echo) {
    std::string text = "max_connections: " + std::to_string(split.max_connections) + ";\n" +
                       // Every client is 127.0.0.1, and the per-client limit applies once
                       // half of max_connections are held.
                       "max_connections_per_client: " + std::to_string(split.max_connections) +
                       ";\n";
    if (plane == "splice") {
        text += "max_pipes: " + std::to_string(kSplicePipes) + ";\n";
    }
    text += "listen: ( { host: \"127.0.0.1\"; port: \"" + std::to_string(listen) + "\"; } );\n" +
            "protocols: ( { name: \"anyprot\"; host: \"127.0.0.1\"; port: \"" +
            std::to_string(echo) + "\"; } );\n" + "timeout: 1;\nconnect_timeout: 2;\n";
    return text;
}

// One daemon with its echo backend.
struct Shard {
    Shard(const std::string& plane, const Split& split)
        : echo(SPLICER_ECHO_SERVER),
          port(test::free_port()),
          daemon(test::start_daemon(plane, shard_config(plane, split, port, echo.port()))) {}

    test::EchoProcess echo;
    std::uint16_t port;
    std::unique_ptr<test::DaemonProcess> daemon;
    int idle_fds = 0;
    std::uint64_t idle_rss = 0;
    std::uint64_t held_rss = 0;
    int held_fds = 0;
    std::uint64_t held_entries = 0;
};

std::uint64_t rss_of(const test::DaemonProcess& daemon) {
    return test::resident_bytes(daemon.pid()).value_or(0);
}

// Opens `count` connections through every shard at once, each proved by an echo; returns
// the holders once all are established (REQUIREs it).
std::vector<std::unique_ptr<test::IdleHolder>> open_through(
    const std::vector<std::unique_ptr<Shard>>& shards, std::size_t count,
    std::chrono::seconds within) {
    std::vector<std::unique_ptr<test::IdleHolder>> holders;
    for (const auto& shard : shards) {
        holders.push_back(
            std::make_unique<test::IdleHolder>(SPLICER_IDLE_HOLDER, shard->port, count, within));
    }
    for (std::size_t i = 0; i < holders.size(); ++i) {
        const auto established = holders[i]->wait_established(within + 10s);
        CAPTURE(i, count);
        INFO(shards[i]->daemon->log_tail(20));
        REQUIRE(established.has_value());
        REQUIRE(*established == count);
    }
    return holders;
}

// Every held connection echoes its own line.
void check_all_echo(std::vector<std::unique_ptr<test::IdleHolder>>& holders, std::size_t count) {
    for (auto& holder : holders) {
        const auto echo = holder->echo_all(60s);
        REQUIRE(echo.has_value());
        CHECK(echo->echoed == count);
        CHECK(echo->failed == 0);
    }
}

std::size_t closed_lines(const test::DaemonProcess& daemon) {
    return daemon.logs("closed").size();
}

// Lines the daemon's log queue dropped (event=log_dropped dropped=N): thousands of closed
// lines at once may outrun a test reader thread on a loaded machine, which costs lines by
// design (test_log_backpressure.cpp), never the connections.
std::size_t dropped_lines(const test::DaemonProcess& daemon) {
    std::size_t dropped = 0;
    for (const auto& line : daemon.logs("log_dropped")) {
        if (line.has("dropped")) {
            dropped += std::stoull(std::string(line.get("dropped")));
        }
    }
    return dropped;
}

}  // namespace

TEST_CASE("20000 idle spliced connections on each plane cost bounded memory and all still echo",
          "[daemon][load][serial][figures]") {
    test::require_root();
    const std::string plane = GENERATE(as<std::string>{}, "sockmap", "splice", "copy");
    CAPTURE(plane);
    const auto started = test::Clock::now();
    const std::uint64_t hard_limit = raise_hard_fd_limit(2 * kConnections + 1024);
    const Split split = split_for(hard_limit, plane);
    CAPTURE(hard_limit, split.shards, split.per_shard);
    const std::size_t total = split.shards * split.per_shard;
    REQUIRE(total >= kConnections);

    std::vector<std::unique_ptr<Shard>> shards;
    for (std::size_t i = 0; i < split.shards; ++i) {
        shards.push_back(std::make_unique<Shard>(plane, split));
        shards.back()->idle_fds = shards.back()->daemon->open_fd_count();
    }
    {
        auto warm = open_through(shards, kWarmUp, 30s);
        check_all_echo(warm, kWarmUp);
        for (auto& holder : warm) {
            holder->stop();
        }
    }
    for (const auto& shard : shards) {
        INFO(shard->daemon->log_tail(20));
        REQUIRE(test::wait_for_fd_count(*shard->daemon, shard->idle_fds) == shard->idle_fds);
    }
    // Closed lines and heap trim (once a second) of the warm-up settle before the baseline.
    std::this_thread::sleep_for(1500ms);
    for (const auto& shard : shards) {
        shard->idle_rss = rss_of(*shard->daemon);
        REQUIRE(shard->idle_rss > 0);
    }
    const test::KernelMemory before = test::kernel_memory();

    const auto opening = test::Clock::now();
    auto holders = open_through(shards, split.per_shard, 120s);
    const auto opened_in =
        std::chrono::duration_cast<std::chrono::milliseconds>(test::Clock::now() - opening);
    for (const auto held_from = test::Clock::now(); test::Clock::now() - held_from < kHold;) {
        std::this_thread::sleep_for(500ms);
        for (const auto& shard : shards) {
            shard->held_rss = std::max(shard->held_rss, rss_of(*shard->daemon));
        }
    }
    // Before anything lists /proc/PID/fd: each entry listed costs a proc inode and a dentry
    // (about 2.7 KiB per fd, measured), which would count as the connections'.
    const test::KernelMemory held = test::kernel_memory();
    for (const auto& shard : shards) {
        shard->held_fds = shard->daemon->open_fd_count();
        for (const auto& [path, entries] : test::keyed_map_entries(shard->daemon->pin_dir())) {
            shard->held_entries = std::max(shard->held_entries, entries);
        }
    }
    const auto echo_started = test::Clock::now();
    check_all_echo(holders, split.per_shard);
    const auto echoed_in =
        std::chrono::duration_cast<std::chrono::milliseconds>(test::Clock::now() - echo_started);

    std::uint64_t idle_rss = 0;
    std::uint64_t held_rss = 0;
    for (const auto& shard : shards) {
        idle_rss += shard->idle_rss;
        held_rss += shard->held_rss;
    }
    const auto per_connection = [total](std::uint64_t after, std::uint64_t before_value) {
        return after > before_value ? (after - before_value) / total : 0;
    };
    const std::uint64_t rss_each = per_connection(held_rss, idle_rss);
    const std::uint64_t slab_each = per_connection(held.slab, before.slab);
    const std::uint64_t tcp_each = per_connection(held.tcp, before.tcp);
    WARN("plane " << plane << ": " << total << " idle connections over " << split.shards
                  << " daemon(s) of " << split.per_shard << " (fd hard limit " << hard_limit
                  << "), opened and echoed in " << opened_in.count() << " ms, all echoed again in "
                  << echoed_in.count() << " ms after a " << kHold.count()
                  << " s hold. Per connection: daemon RSS " << rss_each << " B ("
                  << (idle_rss >> 10) << " -> " << (held_rss >> 10) << " KiB), kernel slab "
                  << slab_each << " B (" << (before.slab >> 10) << " -> " << (held.slab >> 10)
                  << " KiB), TCP mem " << tcp_each
                  << " B. Largest slab growth: " << test::largest_slab_growth(before, held, 8));

    const Bounds bounds = bounds_for(plane);
    CHECK(rss_each <= bounds.daemon_rss);
    CHECK(slab_each <= bounds.kernel_slab);
    CHECK(slab_each >= kLeastKernelSlab);
    CHECK(tcp_each <= bounds.kernel_tcp);
    for (const auto& shard : shards) {
        INFO(shard->daemon->log_tail(20));
        // Both sockets of every connection held by the daemon at once.
        CHECK(shard->held_fds >= shard->idle_fds + static_cast<int>(2 * split.per_shard));
        if (plane == "sockmap") {
            CHECK(shard->held_entries >= 2 * split.per_shard);  // all in the sockhash
        }
    }

    // The clients leave: everything released, one closed line per connection, a clean stop.
    for (auto& holder : holders) {
        holder->stop();
    }
    for (const auto& shard : shards) {
        const test::DaemonProcess& daemon = *shard->daemon;
        INFO(daemon.log_tail(20));
        CHECK(test::wait_for_fd_count(daemon, shard->idle_fds, 30s) == shard->idle_fds);
        for (const auto& [path, entries] : test::keyed_map_entries(daemon.pin_dir())) {
            CAPTURE(path);
            CHECK(entries == 0);
        }
        const std::size_t expected = kWarmUp + split.per_shard;
        const auto deadline = test::Clock::now() + 20s;
        while (closed_lines(daemon) + dropped_lines(daemon) < expected &&
               test::Clock::now() < deadline) {
            std::this_thread::sleep_for(100ms);
        }
        const std::size_t closed = closed_lines(daemon);
        const std::size_t dropped = dropped_lines(daemon);
        CAPTURE(closed, dropped, expected);
        CHECK(closed <= expected);
        CHECK(closed + dropped >= expected);
        test::stop_daemon(*shard->daemon);
    }
    WARN("plane " << plane << ": whole run "
                  << std::chrono::duration_cast<std::chrono::milliseconds>(test::Clock::now() -
                                                                           started)
                         .count()
                  << " ms");
}
