// A backend that stops reading for a while in the middle of a two-way bulk transfer, then
// reads again: the brake the watch put on the client's socket for the stop (plane/
// sink_watch.h) must come off again, and the upload go on at once, on every data plane.
// Before, only the fast-reader proof released it, so a transfer that had stopped once stayed
// braked to its end: the state issue 13's sockmap stall happened in (a 32 MiB both-ways
// transfer stuck at 6-7 MB in the client -> backend direction, about 1 run in 10 under
// load, the client in zero-window probing with a doubling backoff). That stall itself did not
// reproduce here without load; the brake that stayed on does, every run.
// The daemon says so too: one event=reader_stopped and one event=reader_resumed line for the
// connection, readers_stopped / readers_resumed up by one in `splicer stats --json` and on
// the metrics endpoint (before, the brake came and went without a word).

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <future>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "daemon_test_common.h"
#include "support/raw_client.h"
#include "support/sockets.h"

namespace test = splicer::test;
using namespace std::chrono_literals;
using splicer::UniqueFd;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::uint64_t kUpload = 16ULL << 20;    // client -> backend
constexpr std::uint64_t kDownload = 16ULL << 20;  // backend -> client
constexpr std::uint64_t kUploadSeed = 1301;
constexpr std::uint64_t kDownloadSeed = 1302;
// The backend reads this much, then takes nothing for kPause (the watch brakes after 1 s
// without progress: plane::kLowerAfter), sending all the while, then reads as fast as it can.
constexpr std::uint64_t kPauseAfter = 4ULL << 20;
constexpr auto kPause = 2500ms;
// The pause goes on past kPause until the test has seen the brake, up to this long: on a
// loaded machine the watch may brake late in the pause and the test's `ss` samples come
// slowly, and a brake on for a moment could be missed (saw_brake failed so under load). A
// daemon that never brakes still fails, 5.5 s later.
constexpr auto kLongestPause = 8s;
// Once the backend reads again, the rest of the upload (at most 12 MiB over loopback, which
// moves hundreds of MiB/s) must arrive within this. A client stuck in zero-window probing
// waits out its backoff instead: tens of seconds.
constexpr auto kAfterResume = 8s;
constexpr auto kDeadline = 25s;
// The client's socket braked: SO_RCVBUF 512 KiB (plane::kBrakedReceiveBufferBytes, capped by
// net.core.rmem_max), doubled by the kernel. Released, it is 8 MiB and TCP autotuning's
// again, which moves it: never exactly this.
std::uint64_t braked_buffer() {
    std::uint64_t rmem_max = 0;
    std::ifstream("/proc/sys/net/core/rmem_max") >> rmem_max;
    return 2 * std::min<std::uint64_t>(512 * 1024, rmem_max);
}
constexpr auto kReleasedWithin = 3s;

double seconds(Clock::duration duration) {
    return std::chrono::duration<double>(duration).count();
}

struct PeerScript {
    std::uint64_t send_bytes = 0;
    std::uint64_t send_seed = 1;
    std::uint64_t pause_after = 0;  // read this much, then pause (0: never)
    std::chrono::milliseconds pause{0};
    // If given, the pause lasts until it is set too (at most kLongestPause).
    const std::atomic<bool>* pause_until_set = nullptr;
    // Once everything is sent, shut down the write side only when this is set (if given).
    const std::atomic<bool>* shut_when = nullptr;
    std::atomic<std::uint64_t>* received_so_far = nullptr;  // live count (if given)
};

struct PeerReport {
    std::uint64_t received = 0;
    std::uint64_t sent = 0;
    std::string received_sha256;
    std::string sent_sha256;
    bool eof = false;
    std::string error;
    Clock::time_point resumed{};   // reading at full speed again after the pause
    Clock::time_point finished{};  // the peer's EOF was read
    std::string stuck_view;        // ss -tmi of the daemon's sockets, when it timed out
};

// One side of the connection: sends script.send_bytes as fast as the socket takes them,
// reads with the pause in `script`, shuts down its write side once everything is sent,
// ends at the peer's EOF. At the deadline it records the daemon's sockets as the kernel
// sees them.
PeerReport run_peer(int fd, const PeerScript& script, const std::string& ss_filter) {
    test::set_nonblocking(fd);
    PeerReport report;
    test::ByteGenerator generator(script.send_seed);
    test::Sha256Hasher sent_hash;
    test::Sha256Hasher received_hash;
    std::vector<char> out(256 * 1024);
    std::size_t out_start = 0;
    std::size_t out_end = 0;
    std::vector<char> in(256 * 1024);
    bool send_done = script.send_bytes == 0;
    bool shut = false;
    const Clock::time_point start = Clock::now();
    Clock::time_point paused_at{};
    bool paused_once = script.pause_after == 0;
    // Paused (once pause_after bytes were read): for script.pause, and on until
    // pause_until_set is set, at most kLongestPause.
    const auto pausing = [&](Clock::time_point now) {
        if (!paused_once || paused_at == Clock::time_point{}) {
            return false;
        }
        const bool waiting_for_flag =
            script.pause_until_set != nullptr && !script.pause_until_set->load();
        return now < paused_at + script.pause ||
               (waiting_for_flag && now < paused_at + kLongestPause);
    };
    while (!(shut && report.eof)) {
        const Clock::time_point now = Clock::now();
        if (now - start > kDeadline) {
            report.error = "timed out";
            report.stuck_view =
                test::run_command("ss -tmieon '" + ss_filter +
                                  "'; nstat -az TcpExtTCPZeroWindowDrop TcpExtTCPToZeroWindowAdv "
                                  "TcpExtTCPFromZeroWindowAdv TcpExtTCPWantZeroWindowAdv "
                                  "TcpExtTCPRcvQDrop TcpExtPruneCalled")
                    .output;
            break;
        }
        // Paused: no POLLIN (it would spin), a look every 10 ms.
        const bool held_back = pausing(now);
        pollfd entry{.fd = fd, .events = 0, .revents = 0};
        if (!send_done) {
            entry.events |= POLLOUT;
        }
        if (!held_back && !report.eof) {
            entry.events |= POLLIN;
        }
        ::poll(&entry, 1, held_back ? 10 : 50);
        if ((entry.revents & (POLLERR | POLLHUP)) != 0 && (entry.revents & POLLIN) == 0) {
            report.error = "socket error or hang-up";
            break;
        }
        while (!send_done) {
            if (out_start == out_end) {
                const std::uint64_t left = script.send_bytes - report.sent;
                out_end = static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), left));
                out_start = 0;
                generator.fill(out.data(), out_end);
            }
            const ssize_t n = ::send(fd, out.data() + out_start, out_end - out_start,
                                     MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n <= 0) {
                break;
            }
            sent_hash.update(out.data() + out_start, static_cast<std::size_t>(n));
            out_start += static_cast<std::size_t>(n);
            report.sent += static_cast<std::uint64_t>(n);
            if (report.sent == script.send_bytes) {
                send_done = true;
            }
        }
        if (send_done && !shut && (script.shut_when == nullptr || script.shut_when->load())) {
            shut = true;
            ::shutdown(fd, SHUT_WR);
        }
        if (pausing(Clock::now()) || report.eof) {
            continue;
        }
        if (paused_once && report.resumed == Clock::time_point{}) {
            report.resumed = Clock::now();
        }
        for (int round = 0; round < 16; ++round) {
            const ssize_t n = ::recv(fd, in.data(), in.size(), MSG_DONTWAIT);
            if (n == 0) {
                report.eof = true;
                report.finished = Clock::now();
                break;
            }
            if (n < 0) {
                break;
            }
            received_hash.update(in.data(), static_cast<std::size_t>(n));
            report.received += static_cast<std::uint64_t>(n);
            if (script.received_so_far != nullptr) {
                script.received_so_far->store(report.received);
            }
            if (!paused_once && report.received >= script.pause_after) {
                paused_once = true;
                paused_at = Clock::now();
                break;
            }
        }
    }
    report.received_sha256 = received_hash.hex();
    report.sent_sha256 = sent_hash.hex();
    return report;
}

// The receive buffer (skmem rb) of the daemon's socket whose local port is `port` (the
// client's side: the daemon accepted it on its listener), or 0 if there is none.
std::uint64_t daemon_receive_buffer(std::uint16_t port) {
    const std::string output =
        test::run_command("ss -tmHn '( sport = :" + std::to_string(port) + " )'").output;
    const std::size_t at = output.find(",rb");
    return at == std::string::npos ? 0 : std::stoull(output.substr(at + 3));
}

// A counter of `splicer stats --json` (its metric family's name), or nullopt when absent.
std::optional<std::uint64_t> stats_counter(const test::DaemonProcess& daemon,
                                           const std::string& name) {
    const auto result = test::run_command(std::string(SPLICER_BINARY) + " stats --json --pin-dir " +
                                          daemon.pin_dir() + " | jq -r '." + name + "'");
    if (result.exit_code != 0 || result.output.empty() || result.output[0] < '0' ||
        result.output[0] > '9') {
        return std::nullopt;
    }
    return std::stoull(result.output);
}

// The value of the unlabelled sample `name` on the metrics endpoint, or nullopt when absent.
std::optional<std::uint64_t> scraped_counter(std::uint16_t port, const std::string& name) {
    const auto result =
        test::run_command("curl -sS -m 5 http://127.0.0.1:" + std::to_string(port) + "/metrics");
    std::istringstream lines(result.output);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.rfind(name + " ", 0) == 0) {
            return std::stoull(line.substr(name.size() + 1));
        }
    }
    return std::nullopt;
}

std::string describe(const PeerReport& report) {
    std::ostringstream text;
    text << "received " << report.received << ", sent " << report.sent << ", eof " << report.eof
         << ", error '" << report.error << "'";
    return text.str();
}

}  // namespace

TEST_CASE("a backend that stops reading for 2.5 s mid-upload is unbraked once it reads again",
          "[daemon][stall]") {
    test::require_root();
    const std::string plane = GENERATE(as<std::string>{}, "sockmap", "splice", "copy");
    CAPTURE(plane);
    test::Listener listener = test::listen_loopback();
    const test::SnikketPorts ports{.listen = test::free_port(),
                                   .xmpp_tls = test::free_port(),
                                   .https = test::free_port(),
                                   .xmpp = listener.port};
    const std::uint16_t metrics_port = test::free_port();
    auto daemon = test::start_daemon(plane, test::snikket_config(ports) +
                                                "metrics: { host: \"127.0.0.1\"; port: " +
                                                std::to_string(metrics_port) + "; };\n");
    const std::string header = test::xmpp_stream_header();
    UniqueFd client_side = test::connect_and_send(ports.listen, header, "");
    UniqueFd backend_side = test::accept_one(listener);
    const std::string ss_filter = "( sport = :" + std::to_string(ports.listen) +
                                  " or dport = :" + std::to_string(listener.port) + " )";
    const std::uint64_t braked = braked_buffer();
    std::atomic<bool> go_ahead{false};
    std::atomic<std::uint64_t> upload_read{0};
    std::atomic<bool> saw_brake{false};  // the backend's pause lasts until this is seen
    const PeerScript backend_script{
        .send_bytes = kDownload,
        .send_seed = kDownloadSeed,
        .pause_after = header.size() + kPauseAfter,
        .pause = kPause,
        .pause_until_set = &saw_brake,
        .shut_when = nullptr,
        .received_so_far = &upload_read};
    const PeerScript client_script{
        .send_bytes = kUpload,
        .send_seed = kUploadSeed,
        .pause_after = 0,
        .pause = {},
        .pause_until_set = nullptr,
        .shut_when = &go_ahead,
        .received_so_far = nullptr};
    auto backend_run = std::async(std::launch::async, [&] {
        return run_peer(backend_side.get(), backend_script, ss_filter);
    });
    auto client_run = std::async(std::launch::async, [&] {
        return run_peer(client_side.get(), client_script, ss_filter);
    });
    // Once the backend has read the whole upload (the client holds its FIN back, so the pair
    // lives on): the brake the stop put on the client's socket must be off within a few
    // watch intervals (plane::watch_interval: 1 s here).
    // Meanwhile: the stop brakes the client's socket (else this test proves nothing).
    const Clock::time_point deadline = Clock::now() + kDeadline;
    while (upload_read.load() < header.size() + kUpload && Clock::now() < deadline) {
        std::this_thread::sleep_for(100ms);
        if (!saw_brake.load() && daemon_receive_buffer(ports.listen) == braked) {
            saw_brake.store(true);
        }
    }
    const Clock::time_point upload_done = Clock::now();
    std::uint64_t client_buffer = daemon_receive_buffer(ports.listen);
    const std::uint64_t buffer_at_end = client_buffer;
    while (client_buffer == braked && Clock::now() - upload_done < kReleasedWithin) {
        std::this_thread::sleep_for(50ms);
        client_buffer = daemon_receive_buffer(ports.listen);
    }
    const double released_after = seconds(Clock::now() - upload_done);
    go_ahead.store(true);
    const PeerReport client = client_run.get();
    const PeerReport backend = backend_run.get();

    INFO(daemon->log_tail(10));
    INFO(test::daemon_stats(*daemon));
    INFO("daemon's sockets at the deadline:\n" << backend.stuck_view << client.stuck_view);
    INFO("client: " << describe(client));
    INFO("backend: " << describe(backend));
    REQUIRE(backend.resumed != Clock::time_point{});
    // The upload was read in full when upload_done was taken (its FIN came later, on purpose).
    const double after_resume = seconds(upload_done - backend.resumed);
    INFO("upload read in full " << after_resume << " s after the backend read at full speed again");
    WARN("plane " << plane << ": upload finished " << after_resume
                  << " s after the backend read at full speed again");
    CHECK(backend.error.empty());
    CHECK(client.error.empty());
    CHECK(backend.eof);
    CHECK(client.eof);
    CHECK(after_resume <= seconds(kAfterResume));
    INFO("the daemon's client socket: receive buffer " << buffer_at_end
                                                       << " when the upload was read, "
                                                       << client_buffer << " "
                                                       << released_after << " s later");
    CHECK(saw_brake.load());
    CHECK(client_buffer != braked);
    CHECK(backend.received == header.size() + kUpload);
    CHECK(backend.received_sha256 == test::sha256_of_generated(header, kUploadSeed, kUpload));
    CHECK(client.sent == kUpload);
    CHECK(client.received == kDownload);
    CHECK(client.received_sha256 == backend.sent_sha256);

    // What the daemon said about the stop: the watch lowers after 1 s without progress and
    // resumes once the backend took 1 MiB again, each said once, for the client -> backend
    // direction (the client never stopped reading). Counters are published once a second.
    const auto routed = daemon->wait_for_log("routed");
    REQUIRE(routed);
    const std::string conn(routed->get("conn"));
    const auto for_conn = [&conn](const test::LogLine& line) { return line.get("conn") == conn; };
    daemon->wait_for_log("reader_resumed", for_conn, 3000ms);
    const auto stopped = daemon->logs("reader_stopped", for_conn);
    const auto resumed = daemon->logs("reader_resumed", for_conn);
    std::optional<std::uint64_t> stopped_count;
    std::optional<std::uint64_t> resumed_count;
    std::optional<std::uint64_t> stopped_metric;
    std::optional<std::uint64_t> resumed_metric;
    const Clock::time_point counted_by = Clock::now() + 3s;
    do {
        stopped_count = stats_counter(*daemon, "splicer_readers_stopped_total");
        resumed_count = stats_counter(*daemon, "splicer_readers_resumed_total");
        stopped_metric = scraped_counter(metrics_port, "splicer_readers_stopped_total");
        resumed_metric = scraped_counter(metrics_port, "splicer_readers_resumed_total");
        if (resumed_count == 1U && resumed_metric == 1U) {
            break;
        }
        std::this_thread::sleep_for(200ms);
    } while (Clock::now() < counted_by);
    INFO("conn " << conn << ": reader_stopped lines " << stopped.size() << ", reader_resumed "
                 << resumed.size() << ", stats stopped/resumed "
                 << stopped_count.value_or(999) << "/" << resumed_count.value_or(999)
                 << ", metrics " << stopped_metric.value_or(999) << "/"
                 << resumed_metric.value_or(999) << " (999: absent)");
    CHECK(stopped.size() == 1);
    CHECK(resumed.size() == 1);
    if (stopped.size() == 1) {
        CHECK(stopped[0].get("dir") == "client_to_backend");
        CHECK(stopped[0].number("queued").value_or(0) > 0);
        CHECK(stopped[0].has("held"));
    }
    if (resumed.size() == 1) {
        CHECK(resumed[0].get("dir") == "client_to_backend");
        // Stopped kPause (2.5 s) minus the reads before it took effect: well over 1 s.
        CHECK(resumed[0].number("stopped_ms").value_or(0) >= 1000);
    }
    CHECK(stopped_count == 1U);
    CHECK(resumed_count == 1U);
    CHECK(stopped_metric == 1U);
    CHECK(resumed_metric == 1U);
    client_side.reset();
    backend_side.reset();
    test::stop_daemon(*daemon);
}
