// fd exhaustion (sslh's CVE-2025-46807 is the failure to rule out): the daemon sizes
// RLIMIT_NOFILE to max_connections at start or refuses to start, and when accept() still
// meets EMFILE it backs off instead of spinning, keeps what it holds, and serves again once
// fds are free.

#include <sys/resource.h>

#include <algorithm>

#include <sstream>

#include <vector>

#include "daemon/worker_cpus.h"
#include "daemon_test_common.h"
#include "limits/fd_limit.h"
#include "support/command.h"

using namespace splicer::test;
using splicer::UniqueFd;

namespace {

// This process's own RLIMIT_NOFILE.
rlimit own_fd_limit() {
    rlimit limit{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &limit) == 0);
    return limit;
}

void set_own_fd_limit(rlimit limit) { REQUIRE(::setrlimit(RLIMIT_NOFILE, &limit) == 0); }

// Another process's RLIMIT_NOFILE, from /proc/PID/limits (prlimit() on a process of another
// uid needs CAP_SYS_RESOURCE, which root in a container may lack).
rlimit fd_limit_of(pid_t pid) {
    std::istringstream limits(read_file("/proc/" + std::to_string(pid) + "/limits"));
    for (std::string line; std::getline(limits, line);) {
        if (line.rfind("Max open files", 0) == 0) {
            std::istringstream values(line.substr(std::string("Max open files").size()));
            unsigned long long soft = 0;
            unsigned long long hard = 0;
            values >> soft >> hard;
            return {soft, hard};
        }
    }
    FAIL("no Max open files line for pid " << pid);
    return {};
}

// The fds each worker past the first adds to the plan (limits::worker_fds), with `workers`
// at its default (these tests' daemons keep it: DaemonOptions::workers nullopt): one per CPU
// this process may run on, which the daemon inherits. The
// Snikket config has two listen entries.
rlim_t extra_worker_fds() {
    const auto workers = static_cast<std::uint32_t>(splicer::daemon::allowed_cpus().size());
    return splicer::limits::worker_fds(workers, 2);
}

// The fds the daemon plans for (limits::fds_needed): 256 of its own, 2 per connection, and
// on the splice plane 2 per pipe, a quarter as many pipes as connections by default; plus
// the extra workers' fds.
rlim_t planned_fds(const std::string& plane, rlim_t connections) {
    const rlim_t pipes = plane == "splice" ? std::max<rlim_t>((connections + 3) / 4,
                                                              std::min<rlim_t>(16, 2 * connections))
                                           : 0;
    return 256 + 2 * connections + 2 * pipes + extra_worker_fds();
}

}  // namespace

TEST_CASE("the fd limit is raised to what a configured max_connections needs",
          "[daemon][fd][serial]") {
    require_root();
    const SnikketPorts ports = unserved_snikket_ports();
    auto [plane, max_connections, needed] = GENERATE(table<std::string, int, rlim_t>({
        {"copy", 3000, 256 + 2 * 3000},
        {"splice", 1500, 256 + 2 * 1500 + 2 * 375},
    }));
    needed += extra_worker_fds();
    CAPTURE(plane);
    // The daemon inherits a soft limit of 1024 from the test; its hard limit stays.
    const rlimit own = own_fd_limit();
    set_own_fd_limit({1024, own.rlim_max});
    std::unique_ptr<DaemonProcess> daemon;
    {
        DaemonOptions options;
        options.binary = SPLICER_BINARY;
        options.config_text =
            "max_connections: " + std::to_string(max_connections) + ";\n" + snikket_config(ports);
        options.splice_mode = plane;
        options.workers = std::nullopt;  // the default: extra_worker_fds() counts on it
        daemon = std::make_unique<DaemonProcess>(options);
    }
    set_own_fd_limit(own);
    REQUIRE(daemon->wait_ready(15s));
    CHECK(fd_limit_of(daemon->pid()).rlim_cur >= needed);
    const auto logged = daemon->wait_for_log("fd_limit", {}, 1s);
    REQUIRE(logged.has_value());
    CHECK(logged->get("needed") == std::to_string(needed));
    CHECK(logged->get("max_connections") == std::to_string(max_connections));
    CHECK(logged->get("fitted") == "false");
    stop_daemon(*daemon);
}

TEST_CASE("the default max_connections is fitted to an fd hard limit that cannot be raised",
          "[daemon][fd][serial]") {
    require_root();
    const SnikketPorts ports = unserved_snikket_ports();
    auto daemon = start_daemon("splice", snikket_config(ports), std::nullopt);
    const auto logged = daemon->wait_for_log("fd_limit", {}, 1s);
    REQUIRE(logged.has_value());
    const rlimit limit = fd_limit_of(daemon->pid());
    const auto connections = std::stoull(std::string(logged->get("max_connections")));
    // Whatever this machine allows: the limit in force holds every connection the daemon
    // will accept; the default is only lowered when the hard limit could not hold it.
    CHECK(limit.rlim_cur >= planned_fds("splice", connections));
    CHECK(logged->get("max_pipes") == std::to_string((connections + 3) / 4));
    if (logged->get("fitted") == "true") {
        CHECK(connections < 16384);
        CHECK(limit.rlim_max < planned_fds("splice", 16384));
        // As many as fit: one more would not.
        CHECK(limit.rlim_max < planned_fds("splice", connections + 1));
        CHECK(logged->level() == "notice");
    } else {
        CHECK(connections == 16384);
    }
    stop_daemon(*daemon);
}

TEST_CASE("a max_connections no fd limit can hold refuses the start with a clear error",
          "[daemon][fd][serial]") {
    require_root();
    const SnikketPorts ports = unserved_snikket_ports();
    DaemonOptions options;
    options.binary = SPLICER_BINARY;
    // 2 fds per connection and 2 per pipe (250,000 of them) on the splice plane: 2,500,256
    // fds, over fs.nr_open (1048576 by default), which even root cannot exceed.
    options.config_text = "max_connections: 1000000;\n" + snikket_config(ports);
    options.splice_mode = "splice";
    options.workers = std::nullopt;
    DaemonProcess daemon(options);
    CHECK_FALSE(daemon.wait_ready(10s));
    const auto fatal = daemon.wait_for_log("fatal", {}, 2s);
    INFO(daemon.log_tail());
    REQUIRE(fatal.has_value());
    CHECK_THAT(std::string(fatal->get("error")),
               Catch::Contains("RLIMIT_NOFILE: max_connections needs " +
                               std::to_string(2500256 + extra_worker_fds()) + " fds") &&
                   Catch::Contains("lower max_connections"));
    const auto status = daemon.stop(5s, 0);  // signal 0: it has already exited
    REQUIRE(status.has_value());
    CHECK(*status != 0);
}

TEST_CASE("EMFILE on accept: no busy loop, held connections go on, serving resumes",
          "[daemon][fd][serial]") {
    require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    TcpBackend https(BackendScript::exchange(64 * 1024));
    TcpBackend unused(BackendScript::record());
    const SnikketPorts ports{.listen = free_port(),
                             .xmpp_tls = unused.port(),
                             .https = https.port(),
                             .xmpp = unused.port()};
    // The daemon sizes RLIMIT_NOFILE for 64 connections, but starts holding far more fds than
    // its own reserve (as under a parent that leaks fds into it): inherited ones, opened by a
    // wrapper before exec (which also starts it at exactly the planned soft limit), leave
    // room for about 45 more. The accept multishot takes the limit
    // when armed, so EMFILE comes from the fd table really filling up, as in production.
    constexpr rlim_t kConnections = 64;
    const rlim_t inherited = planned_fds(plane, kConnections) - 60;
    const TempDir wrapper_dir("splicer-emfile");
    const auto wrapper = wrapper_dir.write_file(
        "leak-fds-then-exec",
        "#!/bin/bash\nulimit -Sn " + std::to_string(planned_fds(plane, kConnections)) +
            "\nfor ((i = 0; i < " + std::to_string(inherited) +
            "; i++)); do exec {fd}</dev/null; done\nexec " + SPLICER_BINARY + " \"$@\"\n");
    std::filesystem::permissions(wrapper, std::filesystem::perms::owner_all);
    DaemonOptions options;
    options.binary = wrapper.string();
    // No on-timeout rule: silent clients are closed at the 1 s probe timeout.
    options.config_text =
        "max_connections: " + std::to_string(kConnections) + ";\n" +
        snikket_config(ports, {.probe_timeout_seconds = 1, .on_timeout_xmpp = false});
    options.splice_mode = plane;
    options.workers = std::nullopt;
    DaemonProcess daemon(options);
    REQUIRE(daemon.wait_ready(15s));
    REQUIRE(fd_limit_of(daemon.pid()).rlim_cur == planned_fds(plane, kConnections));
    REQUIRE(daemon.open_fd_count() > static_cast<int>(inherited));

    // One connection held through the pressure: spliced before it starts.
    const std::string hello = make_client_hello({.server_name = "chat.example.com"});
    UniqueFd held = connect_and_send(ports.listen, hello, "");
    REQUIRE(https.wait_for_accepted(1, 5s));
    std::this_thread::sleep_for(200ms);  // the daemon hands the pair to its plane

    // 60 silent clients: fewer than max_connections, more than the fds left.
    const auto cpu_before = cpu_time(daemon.pid());
    std::vector<UniqueFd> flood;
    for (int i = 0; i < 60; ++i) {
        flood.push_back(connect_to(ports.listen));  // completes in the listen backlog
    }
    std::this_thread::sleep_for(3s);
    const auto cpu_after = cpu_time(daemon.pid());
    REQUIRE(cpu_before.has_value());
    REQUIRE(cpu_after.has_value());
    // A daemon re-arming accept at once on EMFILE spins at 100% of a core (3 s here); backing
    // off 100 ms between tries costs a few milliseconds.
    INFO("daemon CPU during 3 s of EMFILE: " << (*cpu_after - *cpu_before).count() << " ms");
    // A daemon that died says how (signal or exit status) and its last lines: the first
    // 30 alone did not show why one did in CI.
    INFO("daemon: " << daemon.describe_end());
    INFO(daemon.log_tail(60));
    CHECK(*cpu_after - *cpu_before < 300ms);
    REQUIRE(daemon.running());
    const auto failures = daemon.logs("accept_failed");
    REQUIRE(failures.size() >= 1);
    CHECK(failures.size() <= 5);  // once per second, not once per try
    CHECK(failures.front().get("error") == "Too many open files");
    // Nothing the daemon does once serving opens a file: its once-a-second counters read
    // (sockmap) opened /sys/devices/system/cpu/possible through libbpf, and under EMFILE
    // logged "libbpf: Failed to open cpu mask file ...: -24" and left the counters unread.
    {
        const auto libbpf_lines = daemon.logs("libbpf");
        INFO("first libbpf line: " << (libbpf_lines.empty() ? "" : libbpf_lines.front().raw));
        CHECK(libbpf_lines.empty());
    }

    // The held connection still moves bytes both ways, byte-exact.
    TransferOptions transfer;
    transfer.sent_before = hello;
    transfer.send = Outgoing{"", 256 * 1024, 7};
    transfer.expect = https.script().reply.generated;
    transfer.timeout = 20s;
    const TransferResult result = transfer_both_ways(held.get(), transfer);
    INFO("held: sent " << result.sent << " received " << result.received << " " << result.error);
    CHECK(result.complete(transfer));

    // Pressure ends: the flood goes away, fds come back, new clients are served again.
    flood.clear();
    held.reset();
    REQUIRE(https.wait_for_finished(1, 10s));  // the held one, so it cannot finish in between
    check_still_serving(ports, https);

    std::this_thread::sleep_for(1500ms);  // counters are published once a second
    const auto stats =
        run_command(std::string(SPLICER_BINARY) + " stats --pin-dir " + daemon.pin_dir());
    CAPTURE(stats.output);
    // Backing off 100 ms between tries: ~10 failed accepts a second of pressure (about 5 s
    // here), plus one for each of the other 63 accepts armed on the listener (64 since
    // session 29), each failing once as a flood client wakes it and then parked until
    // accepting works again (104 measured under ASan); a daemon retrying at once fails
    // thousands of times.
    const std::size_t at = stats.output.find("accept_errors ");
    REQUIRE(at != std::string::npos);
    const auto accept_errors = std::stoull(stats.output.substr(at + 14));
    CHECK(accept_errors >= 1);
    CHECK(accept_errors <= 200);
    stop_daemon(daemon);
}
