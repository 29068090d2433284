// `splicer upgrade` / SIGUSR2 (README "Upgrading without dropping connections"): the running
// daemon starts the binary again (the same one here), hands it the listening sockets over a
// unix socket, and stops accepting only once the new process said ready; then it hands over
// its established connections (daemon/connection_handover.h) and exits once what it could
// not hand over ended. A binary that fails leaves the old process serving; one that dies
// while taking the connections leaves them with the old process.
// With `workers: N` every address has N sockets in one SO_REUSEPORT group: all of them are
// handed over and adopted, whatever worker count the new process runs.

#include <bpf/bpf.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "bpf_test_pins.h"
#include "daemon_test_common.h"
#include "support/metrics_scrape.h"
#include "support/scoped_environment.h"

using namespace splicer::test;
using splicer::UniqueFd;

namespace {

constexpr std::uint64_t kLoopReply = 16 * 1024;

std::string with_workers(std::uint32_t workers, const std::string& config) {
    return "workers: " + std::to_string(workers) + ";\n" + config;
}

// The new process's listening lines: one per address of the Snikket config (127.0.0.1 and
// ::1), each adopting every socket the old process's workers had on it.
void check_adopted(const DaemonProcess& daemon, std::uint32_t old_workers) {
    const auto adopted =
        daemon.logs("listening", [](const LogLine& line) { return line.get("from") == "upgrade"; });
    INFO(daemon.log_tail());
    REQUIRE(adopted.size() == 2);
    for (const LogLine& line : adopted) {
        CAPTURE(line.get("addr"));
        CHECK(line.number("received") == old_workers);
    }
}

// A process that is gone (or a zombie nobody reaped yet: it serves nothing either).
bool process_gone(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) {
        return true;
    }
    const std::size_t paren = line.rfind(')');
    return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
}

bool wait_gone(pid_t pid, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!process_gone(pid)) {
        if (Clock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(50ms);
    }
    return true;
}

// A send that waits more than 10 s fails (write_all throws) instead of hanging the test.
void bound_sends(int fd) {
    const timeval limit{.tv_sec = 10, .tv_usec = 0};
    REQUIRE(::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit) == 0);
}

// Writes `bytes` on a thread of its own while the caller reads the other end; joined when
// it goes (bounded by bound_sends). A failed write is reported there.
class BackgroundWrite {
public:
    BackgroundWrite(int fd, std::string bytes)
        : thread_([this, fd, bytes = std::move(bytes)] {
              try {
                  write_all(fd, bytes);
              } catch (const std::exception& error) {
                  error_ = error.what();
              }
          }) {}
    ~BackgroundWrite() {
        thread_.join();
        CHECK(error_.empty());
    }
    BackgroundWrite(const BackgroundWrite&) = delete;
    BackgroundWrite& operator=(const BackgroundWrite&) = delete;

private:
    std::string error_;  // before the thread: set by it
    std::thread thread_;
};

// A transfer both ways through the ALPN xmpp-client rule to a backend the test holds itself
// (both ends are the test's, so each side's pace is the test's to set). Begun before the
// swap: a first part each way sent and read; then kInFlight bytes each way written and left
// unread, in the sockets and the plane while the connection moves; then nothing until
// finish(), which the tests call only once the old process is gone (or, when the new one
// died, while the old one still serves): the rest, kRest bytes each way, and both
// half-closes go through whoever holds the connection by then.
class SplitTransfer {
public:
    static constexpr std::size_t kFirst = 1 << 20;
    static constexpr std::size_t kInFlight = 64 * 1024;
    static constexpr std::uint64_t kRest = 16 << 20;

    SplitTransfer() : backend_listener_(listen_loopback()) {}
    [[nodiscard]] std::uint16_t backend_port() const { return backend_listener_.port; }

    void start(std::uint16_t port) {
        client_ = connect_to(port);
        bound_sends(client_.get());
        const std::string hello = make_client_hello({.alpn = {"xmpp-client"}});
        const std::string first = hello + ByteGenerator(41).take(kFirst);
        {
            // Written while the other end reads: 1 MiB does not fit in the buffers between.
            const BackgroundWrite writing(client_.get(), first);
            pollfd waiting{.fd = backend_listener_.fd.get(), .events = POLLIN, .revents = 0};
            REQUIRE(::poll(&waiting, 1, 10000) == 1);
            backend_ = accept_one(backend_listener_);
            bound_sends(backend_.get());
            CHECK(read_exactly(backend_.get(), first.size(), 10000) == first);
        }
        const std::string reply = ByteGenerator(51).take(kFirst);
        {
            const BackgroundWrite writing(backend_.get(), reply);
            CHECK(read_exactly(client_.get(), reply.size(), 10000) == reply);
        }
        // Small enough for the socket buffers on the way: written, not read, by nobody.
        client_in_flight_ = ByteGenerator(42).take(kInFlight);
        backend_in_flight_ = ByteGenerator(52).take(kInFlight);
        write_all(client_.get(), client_in_flight_);
        write_all(backend_.get(), backend_in_flight_);
    }

    [[nodiscard]] std::uint16_t client_port() const { return local_port(client_.get()); }

    // Both ends at once, each sending the rest and then shutting its write side down while
    // the other may still send (the half-close must cross, after the move, with bytes still
    // coming the other way), each reading until the other's FIN.
    void finish() {
        TransferOptions from_client;
        from_client.sent_before = client_in_flight_;
        from_client.send = Outgoing{"", kRest, 43};
        from_client.timeout = 60s;
        TransferOptions from_backend = from_client;
        from_backend.sent_before = backend_in_flight_;
        from_backend.send = Outgoing{"", kRest, 53};
        TransferResult backend_side;
        std::thread backend_thread(
            [&] { backend_side = transfer_both_ways(backend_.get(), from_backend); });
        const TransferResult client_side = transfer_both_ways(client_.get(), from_client);
        backend_thread.join();
        INFO("client: " << describe_stream(client_side));
        INFO("backend: " << describe_stream(backend_side));
        CHECK(client_side.complete(from_client));
        CHECK(backend_side.complete(from_backend));
        CHECK(client_side.eof);
        CHECK(backend_side.eof);
        CHECK_FALSE(client_side.reset);
        CHECK_FALSE(backend_side.reset);
        CHECK(backend_side.received == kInFlight + kRest);
        CHECK(client_side.received == kInFlight + kRest);
        CHECK(backend_side.received_sha256 == client_side.sent_sha256);
        CHECK(client_side.received_sha256 == backend_side.sent_sha256);
        client_.reset();
        backend_.reset();
    }

private:
    Listener backend_listener_;
    UniqueFd client_;
    UniqueFd backend_;
    std::string client_in_flight_;
    std::string backend_in_flight_;
};

// The old process's connection id of the transfer (its routed line, by client port).
std::string conn_of(const DaemonProcess& daemon, const SplitTransfer& transfer) {
    const auto routed = routed_line(daemon, transfer.client_port());
    INFO(daemon.log_tail());
    REQUIRE(routed.has_value());
    return std::string(routed->get("conn"));
}

// Milliseconds from one log line's ts (2026-12-05T13:45:06.123Z) to another's, both of one
// day.
long milliseconds_between(const LogLine& first, const LogLine& second) {
    const auto of_day = [](std::string_view ts) {
        REQUIRE(ts.size() >= 23);
        const auto number = [&](std::size_t at, std::size_t length) {
            return std::stol(std::string(ts.substr(at, length)));
        };
        return ((number(11, 2) * 60 + number(14, 2)) * 60 + number(17, 2)) * 1000 +
               number(20, 3);
    };
    return of_day(second.get("ts")) - of_day(first.get("ts"));
}

// The connections the old process's handover lines say the new process took.
std::uint64_t handed_over(const DaemonProcess& daemon) {
    std::uint64_t total = 0;
    for (const LogLine& line : daemon.logs("connections_handed_over")) {
        total += line.number("connections").value_or(0);
    }
    return total;
}

// A process's start time (field 22 of /proc/PID/stat): with the pid, names one process
// even after the pid is reused. 0 when it is gone.
std::uint64_t start_time(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line) || line.rfind(')') == std::string::npos) {
        return 0;
    }
    std::istringstream fields(line.substr(line.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 22 && fields >> field; ++i) {
    }
    return field.empty() ? 0 : std::stoull(field);
}

// The new daemons of upgrade tests still running, one "TEST_PID PID START_TIME" a line. A
// new daemon is nobody's child, so a test process killed from outside (no destructor runs)
// left it running as the run user, which then failed the .deb test's userdel: the next
// AdoptedDaemon kills every one whose test process is gone. Test processes may run side by
// side (ctest -j): the file is locked while read and rewritten, and a live test's daemons
// are left alone.
class AdoptedPidFile {
public:
    static constexpr const char* kPath = "/run/splicer-test-upgrade-adopted";

    // Rewrites the file under its lock with what `keep` keeps of its lines, plus `add`.
    static void update(const std::function<bool(pid_t test, pid_t pid, std::uint64_t start)>& keep,
                       const std::string& add = {}) {
        UniqueFd file(::open(kPath, O_RDWR | O_CREAT | O_CLOEXEC, 0600));
        if (!file || ::flock(file.get(), LOCK_EX) != 0) {
            return;  // best effort: a test does not fail on its clean-up aid
        }
        std::string text;
        char chunk[4096];
        ssize_t got = 0;
        while ((got = ::read(file.get(), chunk, sizeof chunk)) > 0) {
            text.append(chunk, static_cast<std::size_t>(got));
        }
        std::istringstream lines(text);
        std::string kept;
        long test = 0;
        long pid = 0;
        std::uint64_t start = 0;
        while (lines >> test >> pid >> start) {
            if (keep(static_cast<pid_t>(test), static_cast<pid_t>(pid), start)) {
                kept += std::to_string(test) + " " + std::to_string(pid) + " " +
                        std::to_string(start) + "\n";
            }
        }
        kept += add;
        if (::ftruncate(file.get(), 0) == 0) {
            [[maybe_unused]] const ssize_t written = ::pwrite(file.get(), kept.data(), kept.size(), 0);
        }
    }

    // Kills the daemons of test processes that are gone.
    static void kill_orphans() {
        update([](pid_t test, pid_t pid, std::uint64_t start) {
            if (!process_gone(test)) {
                return true;
            }
            if (start != 0 && start_time(pid) == start) {
                ::kill(pid, SIGKILL);
            }
            return false;
        });
    }
};

// The new daemon is nobody's child here: the test ends it itself (SIGTERM, then SIGKILL),
// and a pid file ends it at the next test's start if this test process was killed.
class AdoptedDaemon {
public:
    explicit AdoptedDaemon(pid_t pid) : pid_(pid) {
        AdoptedPidFile::kill_orphans();
        AdoptedPidFile::update([](pid_t, pid_t, std::uint64_t) { return true; },
                               std::to_string(::getpid()) + " " + std::to_string(pid) + " " +
                                   std::to_string(start_time(pid)) + "\n");
    }
    ~AdoptedDaemon() {
        if (pid_ > 1 && !process_gone(pid_)) {
            ::kill(pid_, SIGKILL);
            wait_gone(pid_, 5s);
        }
        AdoptedPidFile::update(
            [this](pid_t, pid_t pid, std::uint64_t) { return pid != pid_; });
    }
    AdoptedDaemon(const AdoptedDaemon&) = delete;
    AdoptedDaemon& operator=(const AdoptedDaemon&) = delete;
    // SIGTERM: gone within 10 s.
    bool stop() {
        ::kill(pid_, SIGTERM);
        return wait_gone(pid_, 10s);
    }

private:
    pid_t pid_;
};

// Clients that connect one after another, each through the SNI rule with a short exchange,
// until stopped (bounded: at most kMaxAttempts and 30 s). Every one must be served whole:
// a refused, reset or short connection is counted.
class ConnectLoop {
public:
    static constexpr int kMaxAttempts = 3000;

    ConnectLoop(std::uint16_t port, const Outgoing& reply) : port_(port), reply_(reply) {
        thread_ = std::thread([this] { run(); });
    }
    ~ConnectLoop() { finish(); }
    ConnectLoop(const ConnectLoop&) = delete;
    ConnectLoop& operator=(const ConnectLoop&) = delete;

    void finish() {
        stop_ = true;
        if (thread_.joinable()) {
            thread_.join();
        }
    }
    // From now on, served connections also count as served after the swap.
    void mark_swapped() { swapped_ = true; }
    [[nodiscard]] int served() const { return served_; }
    [[nodiscard]] int served_after_swap() const { return served_after_swap_; }
    // From now on the old process is gone: what is served is the new one's alone.
    void mark_old_gone() { old_gone_ = true; }
    [[nodiscard]] int served_after_old_gone() const { return served_after_old_gone_; }
    [[nodiscard]] int failed() const { return failed_; }
    [[nodiscard]] const std::string& first_failure() const { return first_failure_; }

private:
    void run() {
        const std::string hello = make_client_hello({.server_name = "chat.example.com"});
        const auto deadline = Clock::now() + 30s;
        for (int i = 0; i < kMaxAttempts && !stop_ && Clock::now() < deadline; ++i) {
            // Paced, so that the attempts span the whole swap however long it takes.
            std::this_thread::sleep_for(2ms);
            const bool after_swap = swapped_;
            const bool after_old_gone = old_gone_;
            std::string failure;
            try {
                UniqueFd client = connect_to(port_, false, 3s);
                TransferOptions options;
                options.send = Outgoing{hello, 1024, 7000 + static_cast<std::uint64_t>(i)};
                options.expect = reply_.generated;
                options.timeout = 10s;
                const TransferResult result = transfer_both_ways(client.get(), options);
                if (!result.complete(options) || result.reset) {
                    failure = describe_stream(result);
                }
            } catch (const std::exception& error) {
                failure = error.what();  // refused, or no answer to the SYN
            }
            if (failure.empty()) {
                ++served_;
                served_after_swap_ += after_swap ? 1 : 0;
                served_after_old_gone_ += after_old_gone ? 1 : 0;
            } else {
                if (failed_ == 0) {
                    first_failure_ = failure;
                }
                ++failed_;
            }
        }
    }

    std::uint16_t port_;
    Outgoing reply_;
    std::atomic<bool> stop_{false};
    std::atomic<bool> swapped_{false};
    std::atomic<int> served_{0};
    std::atomic<int> served_after_swap_{0};
    std::atomic<bool> old_gone_{false};
    std::atomic<int> served_after_old_gone_{0};
    std::atomic<int> failed_{0};
    std::string first_failure_;
    std::thread thread_;
};

// `splicer upgrade --pid PID`, then the old daemon's upgraded line: the new pid.
pid_t upgrade(DaemonProcess& daemon) {
    const auto asked =
        run_command(std::string(SPLICER_BINARY) + " upgrade --pid " + std::to_string(daemon.pid()));
    INFO(asked.output);
    REQUIRE(asked.exit_code == 0);
    const auto upgraded = daemon.wait_for_log("upgraded", {}, 30s);
    INFO(daemon.log_tail());
    REQUIRE(upgraded.has_value());
    const pid_t new_pid = std::stoi(std::string(upgraded->get("new_pid")));
    REQUIRE(new_pid > 1);
    REQUIRE(new_pid != daemon.pid());
    return new_pid;
}

// The old process exits once what it held is over (bounded), with status 0.
void check_old_exits(DaemonProcess& daemon, std::chrono::seconds within) {
    const auto deadline = Clock::now() + within;
    while (daemon.running() && Clock::now() < deadline) {
        std::this_thread::sleep_for(50ms);
    }
    INFO(daemon.log_tail());
    REQUIRE_FALSE(daemon.running());
    CHECK(daemon.exit_status() == 0);
    CHECK(daemon.logs("upgrade_failed").empty());
    // Its last line read: every line after it is the new process's (both write to the same
    // stderr, the new one inherited it).
    REQUIRE(daemon.wait_for_log("stopped", {}, 5s).has_value());
}

// After the old process is gone: keeps the loop's clients coming for at least `at_least`,
// and on until each of the new process's `workers` served one of them (closed lines from
// `closed_before` on) and more than 5 were served, for at most 10 s. The kernel hashes each
// connection to one worker's listener, so a few in a row may all land on one worker; on a
// loaded machine the 500 ms window alone held as few as 7 (2 of 24 runs with a busy loop on
// each CPU saw one worker only).
void serve_on_every_worker(const DaemonProcess& daemon, const ConnectLoop& loop,
                           std::size_t closed_before, std::size_t workers,
                           std::chrono::milliseconds at_least) {
    const auto started = Clock::now();
    std::this_thread::sleep_for(at_least);
    while ((closed_per_worker(daemon, closed_before).size() < workers ||
            loop.served_after_old_gone() <= 5) &&
           Clock::now() - started < 10s) {
        std::this_thread::sleep_for(50ms);
    }
}

}  // namespace

TEST_CASE(
    "an upgrade hands listeners and established connections over with no refused connection "
    "and no lost byte and the old process exits before the transfer ends",
    "[daemon][upgrade]") {
    require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    SplitTransfer in_flight;                                     // ALPN xmpp-client rule
    TcpBackend https(BackendScript::exchange(kLoopReply, 900));  // SNI rule
    SnikketPorts ports;
    ports.listen = free_port();
    ports.xmpp_tls = in_flight.backend_port();
    ports.https = https.port();
    ports.xmpp = free_port();
    const std::uint16_t metrics_port = free_port();
    auto daemon = start_daemon(
        plane, with_workers(2, snikket_config(ports) + "metrics: { host: \"127.0.0.1\"; port: " +
                                   std::to_string(metrics_port) + "; };\n"));

    const std::vector<std::string> old_pins = pin_names(daemon->pin_dir());
    const std::uint32_t old_counters_map = pinned_map_id(daemon->pin_dir() + "/daemon");
    REQUIRE(old_counters_map != 0);
    in_flight.start(ports.listen);
    const std::string conn = conn_of(*daemon, in_flight);
    ConnectLoop loop(ports.listen, https.script().reply);
    std::this_thread::sleep_for(300ms);  // some clients before the swap
    const std::size_t lines_before = daemon->log_count();
    const pid_t new_pid = upgrade(*daemon);
    AdoptedDaemon adopted(new_pid);
    loop.mark_swapped();

    // Every plane: the old process hands the transfer over and exits before most of it was
    // sent: what comes now, the new process moves. Sockmap: the new process loaded its
    // program onto the old one's pinned maps, so the pair moves without leaving the sockhash.
    check_old_exits(*daemon, 20s);
    CHECK(handed_over(*daemon) >= 1);  // a connection of the loop may have moved with it
    CHECK(daemon->logs("connections_kept").empty());
    const auto adopted_line = daemon->wait_for_log(
        "adopted", [&](const LogLine& line) { return line.get("from_conn") == conn; }, 1s,
        lines_before);
    INFO(daemon->log_tail());
    REQUIRE(adopted_line.has_value());
    if (plane == "sockmap") {
        CHECK(daemon->logs("sockmap_maps_reused").size() == 1);
        CHECK(daemon->logs("adopt_refused").empty());
    }
    // Export (old process) to adoption (new process), by the two lines' timestamps.
    const auto exported_line = daemon->wait_for_log(
        "exported", [&](const LogLine& line) { return line.get("conn") == conn; }, 1s,
        lines_before);
    REQUIRE(exported_line.has_value());
    WARN("export to adoption, " << plane << " plane: "
                                << milliseconds_between(*exported_line, *adopted_line) << " ms");
    check_adopted(*daemon, 2);
    const std::size_t closed_before = daemon->logs("closed").size();
    loop.mark_old_gone();
    serve_on_every_worker(*daemon, loop, closed_before, 2, 500ms);  // by the new process alone

    loop.finish();
    INFO("first failure: " << loop.first_failure());
    CHECK(loop.failed() == 0);
    CHECK(loop.served() > 5);
    CHECK(loop.served_after_swap() > 5);  // by the new process (the old one stopped accepting)
    CHECK(loop.served_after_old_gone() > 5);
    // Both of the new process's workers accept: every old socket was adopted.
    REQUIRE(https.wait_for_finished(https.accepted(), 10s));
    const auto per_worker = closed_per_worker(*daemon, closed_before);
    CHECK(per_worker.count("0") == 1);
    CHECK(per_worker.count("1") == 1);

    // The new process's counters hold the adopted connection: the one still open (the
    // loop's are over), published within a second. Then the rest of the transfer.
    std::this_thread::sleep_for(1500ms);
    const auto samples = scrape_metrics(metrics_port);
    CHECK(samples.at("splicer_connections_active") == 1);
    // The new process's pins took the old names (none left provisional), `daemon` its own
    // counters, which `splicer stats` reads.
    CHECK(pin_names(daemon->pin_dir()) == old_pins);
    const std::uint32_t new_counters_map = pinned_map_id(daemon->pin_dir() + "/daemon");
    CHECK(new_counters_map != 0);
    CHECK(new_counters_map != old_counters_map);
    CHECK(daemon_counter(*daemon, "active") == 1);
    in_flight.finish();

    // The new process serves alone now, on the same plane, with its own pins in place.
    CHECK_FALSE(process_gone(new_pid));
    // The loop's last connections may still be ending at the backend: check_still_serving
    // looks at the last one to finish.
    REQUIRE(https.wait_for_finished(https.accepted(), 10s));
    check_still_serving(ports, https);
    if (plane == "sockmap") {
        CHECK_FALSE(pinned_objects(daemon->pin_dir()).empty());
    }
    CHECK(adopted.stop());
    CHECK(pinned_objects(daemon->pin_dir()).empty());
}

TEST_CASE("a failed upgrade leaves the old process serving and is counted", "[daemon][upgrade]") {
    require_root();
    // Debug builds only (SPLICER_TEST_HOOKS): the binary the upgrade starts, read at start.
    const std::string binary = GENERATE(as<std::string>{}, "/bin/false", "/nonexistent/splicer");
    CAPTURE(binary);
    const ScopedEnvironment failing("SPLICER_TEST_UPGRADE_BINARY", binary.c_str());
    TcpBackend https(BackendScript::exchange(64 * 1024));
    SnikketPorts ports = unserved_snikket_ports();
    ports.https = https.port();
    auto daemon = start_daemon("splice", with_workers(2, snikket_config(ports)));

    const auto asked = run_command(std::string(SPLICER_BINARY) + " upgrade --pid " +
                                   std::to_string(daemon->pid()));
    REQUIRE(asked.exit_code == 0);
    const auto failed = daemon->wait_for_log("upgrade_failed", {}, 35s);
    INFO(daemon->log_tail());
    REQUIRE(failed.has_value());
    // Gone before or after it read the offer: the send fails, or the wait sees the close.
    CHECK_THAT(std::string(failed->get("reason")),
               Catch::StartsWith("the new process exited before ready"));
    CHECK(daemon->logs("upgraded").empty());
    CHECK(daemon->running());
    check_still_serving(ports, https);
    std::this_thread::sleep_for(1500ms);  // counters are published once a second
    CHECK(daemon_counter(*daemon, "upgrades_failed") == 1);
    CHECK(daemon_counter(*daemon, "upgrades_ok") == 0);
    // A second try runs again (one failed upgrade blocks none after it), and a stop then
    // shuts the listeners down as usual: nobody else holds them.
    REQUIRE(
        run_command(std::string(SPLICER_BINARY) + " upgrade --pid " + std::to_string(daemon->pid()))
            .exit_code == 0);
    REQUIRE(wait_for_counter(*daemon, "upgrades_failed", 2, 35s) == 2);
    check_still_serving(ports, https);
    stop_daemon(*daemon);
}

TEST_CASE(
    "a new process that dies after ready before or while taking the connections leaves "
    "every connection with the old process byte-exact",
    "[daemon][upgrade]") {
    require_root();
    const std::string plane = GENERATE(as<std::string>{}, "sockmap", "splice", "copy");
    CAPTURE(plane);
    // Debug builds only (SPLICER_TEST_HOOKS): read by the new process alone, as only an
    // adopting start receives batches.
    const std::string when = GENERATE(as<std::string>{}, "before_batches", "in_batch");
    CAPTURE(when);
    const ScopedEnvironment dying("SPLICER_TEST_UPGRADE_DIE", when.c_str());
    SplitTransfer in_flight;
    SnikketPorts ports = unserved_snikket_ports();
    ports.xmpp_tls = in_flight.backend_port();
    auto daemon = start_daemon(plane, with_workers(2, snikket_config(ports)));

    in_flight.start(ports.listen);
    const std::string conn = conn_of(*daemon, in_flight);
    const pid_t new_pid = upgrade(*daemon);
    AdoptedDaemon adopted(new_pid);
    REQUIRE(wait_gone(new_pid, 20s));
    // The batch went back to the loop that exported it: the old process serves it on.
    const auto kept = daemon->wait_for_log("connections_kept", {}, 20s);
    INFO(daemon->log_tail());
    REQUIRE(kept.has_value());
    CHECK(kept->number("connections") == 1);
    CHECK(handed_over(*daemon) == 0);
    CHECK(daemon->logs("connections_lost").empty());
    CHECK(daemon->logs("test_upgrade_die").size() == 1);
    // Adopted back by the old process, from its own batch (just after the kept line).
    CHECK(daemon
              ->wait_for_log(
                  "adopted", [&](const LogLine& line) { return line.get("from_conn") == conn; },
                  5s)
              .has_value());
    CHECK(daemon->running());
    in_flight.finish();
    // Then it exits, nothing left (the connection's close line is its own).
    check_old_exits(*daemon, 20s);
    CHECK(daemon->logs("closed").size() == 1);
}

namespace {

UniqueFd open_pinned_sockhash(const DaemonProcess& daemon) {
    UniqueFd sockets(bpf_obj_get((daemon.pin_dir() + "/sockets").c_str()));
    REQUIRE(sockets);
    return sockets;
}

// The old process after an upgrade that failed before ready: it says so, serves on, and its
// sockhash has its own verdict attached (a new process that loaded onto it put it back).
void check_failed_upgrade_left_old(DaemonProcess& daemon, int sockets, std::uint32_t verdict) {
    const auto failed = daemon.wait_for_log("upgrade_failed", {}, 35s);
    INFO(daemon.log_tail());
    REQUIRE(failed.has_value());
    CHECK_THAT(std::string(failed->get("reason")),
               Catch::StartsWith("the new process exited before ready"));
    CHECK(daemon.logs("upgraded").empty());
    CHECK(daemon.running());
    CHECK(attached_verdict_id(sockets) == verdict);
}

// The set-up of the sockmap failed-upgrade cases: the old process (2 workers) with a transfer
// in flight through it (the ALPN xmpp-client rule), an HTTPS backend to see it still serves
// (check_still_serving), its sockhash (the test's own fd, from the pin) and the id of the
// verdict attached to it at its start.
class OldSockmapDaemon {
public:
    OldSockmapDaemon() : https(BackendScript::exchange(64 * 1024)) {
        ports = unserved_snikket_ports();
        ports.xmpp_tls = in_flight.backend_port();
        ports.https = https.port();
        daemon = start_daemon("sockmap", with_workers(2, snikket_config(ports)));
        sockets = open_pinned_sockhash(*daemon);
        verdict = attached_verdict_id(sockets.get());
        REQUIRE(verdict != 0);
        in_flight.start(ports.listen);
    }

    // `splicer upgrade` of the old process, which then says it failed.
    void fail_upgrade() {
        REQUIRE(run_command(std::string(SPLICER_BINARY) + " upgrade --pid " +
                            std::to_string(daemon->pid()))
                    .exit_code == 0);
        check_failed_upgrade_left_old(*daemon, sockets.get(), verdict);
    }

    SplitTransfer in_flight;
    TcpBackend https;
    SnikketPorts ports;
    std::unique_ptr<DaemonProcess> daemon;
    UniqueFd sockets;
    std::uint32_t verdict = 0;
};

}  // namespace

TEST_CASE(
    "a failed upgrade leaves the old process serving its sockmap pairs byte-exact under its "
    "own verdict with its own pins",
    "[daemon][upgrade]") {
    require_root();
    // exits_at_once: the new binary fails before anything (Debug builds: the binary the
    // upgrade starts, SPLICER_TEST_UPGRADE_BINARY). The others load their program onto the
    // old maps, swapping the verdict, and pin their objects, then fail: after_load as root
    // (the config it read moved the listener, so the old one's is left unclaimed);
    // error_after_drop and crash_after_drop after the privilege drop (Debug builds:
    // SPLICER_TEST_UPGRADE_START_FAIL), returning an error (its destructors put the old
    // verdict back, as uid 65534 with no capability) or ending at once (none run: the old
    // process attaches its verdict again itself).
    const std::string how = GENERATE(as<std::string>{}, "exits_at_once", "after_load",
                                     "error_after_drop", "crash_after_drop");
    CAPTURE(how);
    std::optional<ScopedEnvironment> failing;
    if (how == "exits_at_once") {
        failing.emplace("SPLICER_TEST_UPGRADE_BINARY", "/bin/false");
    } else if (how == "error_after_drop") {
        failing.emplace("SPLICER_TEST_UPGRADE_START_FAIL", "error");
    } else if (how == "crash_after_drop") {
        failing.emplace("SPLICER_TEST_UPGRADE_START_FAIL", "crash");
    }
    OldSockmapDaemon old;
    DaemonProcess& daemon = *old.daemon;
    const std::vector<std::string> pins = pin_names(daemon.pin_dir());
    const std::uint32_t counters_map = pinned_map_id(daemon.pin_dir() + "/daemon");
    REQUIRE(counters_map != 0);
    if (how == "after_load") {
        SnikketPorts moved = old.ports;
        moved.listen = free_port();
        std::ofstream(daemon.config_path(), std::ios::trunc)
            << with_workers(2, snikket_config(moved));
    }
    old.fail_upgrade();
    if (how != "exits_at_once") {
        // It did load onto the old maps before it failed.
        CHECK(daemon.logs("sockmap_maps_reused").size() == 1);
        CHECK(daemon.logs("verdict_not_restored").empty());
    }
    if (how == "crash_after_drop") {
        CHECK(daemon.logs("test_upgrade_crash").size() == 1);
    }
    // Whatever the new process did: the old one attached its own verdict again.
    CHECK(daemon.wait_for_log("verdict_reattached", {}, 5s).has_value());
    CHECK(daemon.logs("verdict_not_reattached").empty());
    // The pins are the old process's, as before the upgrade: none of the new one's
    // provisional pins left, `daemon` still its counters map, which `splicer stats` reads
    // (only the old process counted the failed upgrade).
    CHECK(pin_names(daemon.pin_dir()) == pins);
    CHECK(pinned_map_id(daemon.pin_dir() + "/daemon") == counters_map);
    CHECK(wait_for_counter(daemon, "upgrades_failed", 1, 3s) == 1);
    const std::uint64_t accepted = daemon_counter(daemon, "accepted");
    // The pair in flight, and a new one paired after the failure, both through the old.
    old.in_flight.finish();
    check_still_serving(old.ports, old.https);
    // The connection just served, counted by the old process and read through the pin.
    CHECK(wait_for_counter(daemon, "accepted", accepted + 1, 3s) == accepted + 1);
    CHECK(handed_over(daemon) == 0);
    stop_daemon(daemon);
}

TEST_CASE(
    "an upgrade whose new process finds a pinned map of the wrong type or size refuses it by "
    "name and the old process serves on",
    "[daemon][upgrade]") {
    require_root();
    // The pin replaced, and by what: a hash map where the sockhash was, a peers map with
    // 8-byte values (the program would read 56 from each).
    const auto [name, type, value_size] =
        GENERATE(table<std::string, bpf_map_type, std::uint32_t>(
            {{"sockets", BPF_MAP_TYPE_HASH, 8}, {"peers", BPF_MAP_TYPE_HASH, 8}}));
    CAPTURE(name);
    OldSockmapDaemon old;
    DaemonProcess& daemon = *old.daemon;

    // As root, as a process that can write the pin dir would: same name, another map.
    bpf_map_create_opts options{};
    options.sz = sizeof(options);
    const UniqueFd wrong(bpf_map_create(type, name.c_str(), 8, value_size, 1024, &options));
    REQUIRE(wrong);
    const std::string pin = daemon.pin_dir() + "/" + name;
    REQUIRE(::unlink(pin.c_str()) == 0);
    REQUIRE(bpf_obj_pin(wrong.get(), pin.c_str()) == 0);

    old.fail_upgrade();
    const auto fatal = daemon.wait_for_log("fatal", {}, 5s);
    REQUIRE(fatal.has_value());
    CHECK_THAT(std::string(fatal->get("error")),
               Catch::Contains("the old process's sockmap maps: " + pin +
                               " is not the map splicer pins there"));
    CHECK(daemon.logs("sockmap_maps_reused").empty());
    old.in_flight.finish();
    check_still_serving(old.ports, old.https);
    stop_daemon(daemon);
}

TEST_CASE("an upgrade to another worker count adopts every listener with no refused connection",
          "[daemon][upgrade][workers]") {
    require_root();
    const auto [old_workers, new_workers] =
        GENERATE(table<std::uint32_t, std::uint32_t>({{2, 1}, {1, 2}}));
    CAPTURE(old_workers, new_workers);
    TcpBackend https(BackendScript::exchange(kLoopReply, 900));
    SnikketPorts ports = unserved_snikket_ports();
    ports.https = https.port();
    auto daemon = start_daemon("sockmap", with_workers(old_workers, snikket_config(ports)));

    ConnectLoop loop(ports.listen, https.script().reply);
    std::this_thread::sleep_for(300ms);
    // The new process reads the file at its start: it runs the new count.
    std::ofstream(daemon->config_path(), std::ios::trunc)
        << with_workers(new_workers, snikket_config(ports));
    const std::size_t lines_before = daemon->log_count();
    const pid_t new_pid = upgrade(*daemon);
    AdoptedDaemon adopted(new_pid);
    loop.mark_swapped();
    const auto new_ready = daemon->wait_for_log("ready", {}, 5s, lines_before);
    REQUIRE(new_ready.has_value());
    CHECK(new_ready->number("workers") == new_workers);
    check_adopted(*daemon, old_workers);

    check_old_exits(*daemon, 20s);
    const std::size_t closed_before = daemon->logs("closed").size();
    loop.mark_old_gone();
    serve_on_every_worker(*daemon, loop, closed_before, new_workers, 700ms);
    loop.finish();
    INFO("first failure: " << loop.first_failure());
    CHECK(loop.failed() == 0);
    CHECK(loop.served_after_swap() > 5);
    CHECK(loop.served_after_old_gone() > 5);
    REQUIRE(https.wait_for_finished(https.accepted(), 10s));
    // Every worker of the new process accepts (with 1 -> 2, the second from the socket that
    // joined the group).
    const auto per_worker = closed_per_worker(*daemon, closed_before);
    CHECK(per_worker.size() == new_workers);
    for (std::uint32_t i = 0; i < new_workers; ++i) {
        CHECK(per_worker.count(std::to_string(i)) == 1);
    }
    check_still_serving(ports, https);
    CHECK(adopted.stop());
    CHECK(pinned_objects(daemon->pin_dir()).empty());
}

TEST_CASE("splicer upgrade refuses a pid that is not a running splicer", "[upgrade]") {
    // Its default action would kill whatever process it reached.
    const auto refused =
        run_command(std::string(SPLICER_BINARY) + " upgrade --pid " + std::to_string(::getpid()));
    CHECK(refused.exit_code == 1);
    CHECK_THAT(refused.output, Catch::Contains("not a running `splicer run`"));
    const auto no_pid = run_command(std::string(SPLICER_BINARY) + " upgrade --pid 0");
    CHECK(no_pid.exit_code == 2);
}

TEST_CASE(
    "the upgrade launcher is root with nothing but stdio and its socket, and ends with "
    "the daemon",
    "[daemon][upgrade][privileges]") {
    require_root();
    SnikketPorts ports = unserved_snikket_ports();
    auto daemon = start_daemon("sockmap", with_workers(2, snikket_config(ports)));
    const auto line = daemon->wait_for_log("upgrade_launcher", {}, 5s);
    INFO(daemon->log_tail(20));
    REQUIRE(line.has_value());
    CHECK(line->get("binary") == std::filesystem::canonical(SPLICER_BINARY).string());
    const pid_t launcher = std::stoi(std::string(line->get("pid")));
    REQUIRE(launcher > 1);
    const std::string proc = "/proc/" + std::to_string(launcher);
    std::string status = read_file(proc + "/status");
    CHECK_THAT(status, Catch::Contains("PPid:\t" + std::to_string(daemon->pid()) + "\n"));
    CHECK_THAT(status, Catch::Contains("Uid:\t0\t0\t0\t0\n"));
    CHECK(read_file(proc + "/comm") == "splicer-launch\n");
    // No listener, map, program, ring or signalfd of the daemon's: stdio and one socket, the
    // worker's request channel.
    int sockets = 0;
    for (const auto& entry : std::filesystem::directory_iterator(proc + "/fd")) {
        const std::string target = std::filesystem::read_symlink(entry.path()).string();
        CAPTURE(entry.path().filename().string(), target);
        if (target.rfind("socket:[", 0) == 0 && std::stoi(entry.path().filename().string()) > 2) {
            ++sockets;
            const std::string inode = target.substr(8, target.size() - 9);
            CHECK_THAT(read_file("/proc/net/unix"), Catch::Contains(" " + inode));
            continue;
        }
        CHECK(std::stoi(entry.path().filename().string()) <= 2);
    }
    CHECK(sockets == 1);
    // SIGKILL to the worker runs none of its clean-up: the launcher goes with it anyway.
    daemon->stop(5s, SIGKILL);
    CHECK(wait_gone(launcher, 5s));
}

TEST_CASE("an upgrade test's new daemon left by a killed test process is killed at the next start",
          "[upgrade]") {
    require_root();
    // A test process that is gone (reaped: its pid names nobody) and the daemon it left,
    // played by a sleep.
    const pid_t gone_test = ::fork();
    REQUIRE(gone_test >= 0);
    if (gone_test == 0) {
        ::_exit(0);
    }
    REQUIRE(::waitpid(gone_test, nullptr, 0) == gone_test);
    const pid_t left = ::fork();
    REQUIRE(left >= 0);
    if (left == 0) {
        ::execl("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    REQUIRE(start_time(left) != 0);  // from the fork on, exec or not
    const std::string line = std::to_string(gone_test) + " " + std::to_string(left) + " " +
                             std::to_string(start_time(left)) + "\n";
    AdoptedPidFile::update([](pid_t, pid_t, std::uint64_t) { return true; }, line);
    AdoptedPidFile::kill_orphans();
    int status = 0;
    REQUIRE(::waitpid(left, &status, 0) == left);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
    // Its line is gone with it; a live test's line stays.
    std::ifstream file(AdoptedPidFile::kPath);
    const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    CHECK(text.find(line) == std::string::npos);
}

TEST_CASE("a SIGTERM to an old process still draining is read when worker 0 has nothing left",
          "[daemon][upgrade]") {
    require_root();
    // A sockmap pair the new process cannot adopt stays with the old process: with the
    // sockhash pin gone, the new process makes maps of its own and refuses the batch
    // (README "Upgrading", points 6 and 8). One held on worker 1 alone keeps the old process
    // draining while worker 0, which reads the signals, has nothing left.
    TcpBackend backend(BackendScript::exchange(0));
    SnikketPorts ports = unserved_snikket_ports();
    ports.xmpp_tls = backend.port();
    auto daemon = start_daemon("sockmap", with_workers(2, snikket_config(ports)));
    const std::string hello = make_client_hello({.alpn = {"xmpp-client"}});
    // Worker i numbers its connections i+1, i+1+2, ...: an even id is worker 1's. Clients
    // land on a worker by their hash: keep the first on worker 1, close the others.
    UniqueFd held;
    std::vector<std::string> closed_ids;
    for (int attempt = 0; attempt < 40 && !held.valid(); ++attempt) {
        UniqueFd client = connect_to(ports.listen);
        write_all(client.get(), hello);
        const auto routed = routed_line(*daemon, local_port(client.get()));
        INFO(daemon->log_tail());
        REQUIRE(routed.has_value());
        if (routed->number("conn").value_or(1) % 2 == 0) {
            held = std::move(client);
        } else {
            closed_ids.emplace_back(routed->get("conn"));
        }
    }
    REQUIRE(held.valid());
    for (const std::string& id : closed_ids) {
        REQUIRE(daemon
                    ->wait_for_log(
                        "closed", [&](const LogLine& line) { return line.get("conn") == id; }, 5s)
                    .has_value());
    }
    REQUIRE(::unlink((daemon->pin_dir() + "/sockets").c_str()) == 0);
    const pid_t new_pid = upgrade(*daemon);
    AdoptedDaemon adopted(new_pid);
    // Both workers have stopped accepting; worker 0 holds nothing, worker 1 the pair.
    const auto kept = daemon->wait_for_log("connections_kept", {}, 5s);
    INFO(daemon->log_tail());
    REQUIRE(kept.has_value());
    CHECK(kept->get("worker") == "1");
    // The new process's line: it logs before it answers, but each process's log writer
    // hands its lines on in batches (up to 20 ms), so it may come after the old one's.
    CHECK(daemon->wait_for_log("connections_refused", {}, 5s).has_value());
    CHECK(daemon->logs("connections_refused").size() == 1);
    std::this_thread::sleep_for(1s);
    REQUIRE(daemon->running());
    const auto stopping_at = Clock::now();
    const std::optional<int> status = daemon->stop(5s);
    INFO(daemon->log_tail());
    REQUIRE(status.has_value());
    CHECK(*status == 0);
    CHECK(Clock::now() - stopping_at < 3s);
    CHECK(wait_for_close(held.get(), 5s) == "eof");
    CHECK(adopted.stop());
}
