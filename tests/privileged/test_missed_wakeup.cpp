// The sockmap plane copies the bytes its verdict passed up (flow control) when the source's
// poll reports them readable. A wake-up that never comes (stable kernels have lost readiness
// wake-ups on sockmap sockets: DESIGN.md kernel fact 9) left them there for good: the source's
// receive window shut under them, its sender in zero-window probing, and nothing else looked,
// since once the sink's reader had taken everything queued toward it the watch went idle. A
// transfer then stopped part-way and never ended (the shape of the 7,077,888-byte stalls seen
// under load, which did not reproduce on demand). Now passed bytes not yet copied keep the
// watch armed, and passed bytes readable with no copy under way for a whole watch interval
// are copied from there, logged as event=wakeup_missed.
//
// A lost wake-up cannot be had on demand, so a test build (CMake Debug: the debug and ASan
// flavours) lets the environment variable SPLICER_TEST_MISS_WAKEUP=N drop the plane's Nth
// source wake-up that finds passed bytes readable: nothing copies them and no poll is armed,
// which is what a lost wake-up leaves. Everything after it is the production code.

#include <sys/socket.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "daemon_test_common.h"
#include "support/scoped_environment.h"
#include "support/raw_client.h"
#include "support/sockets.h"
#include "support/streams.h"

namespace test = splicer::test;
using namespace std::chrono_literals;
using splicer::UniqueFd;

namespace {

constexpr std::uint64_t kWakeupDownload = 16ULL << 20;  // backend -> client
constexpr std::uint64_t kSeed = 2107;
// The client reads nothing for this long: the client socket's send buffer fills and the
// verdict passes the backend's bytes up (flow control), so the copy path carries the rest.
constexpr auto kClientWaits = 1000ms;
// Once the client reads, 16 MiB over loopback take well under a second; the watch finds a
// missed wake-up within two of its intervals (1 s each with the default stall_timeout).
// Without the watch's look, the transfer never ends.
constexpr auto kWakeupDeadline = 15s;

}  // namespace

TEST_CASE("sockmap: passed bytes whose wake-up was missed are copied by the watch",
          "[daemon][stall]") {
    test::require_root();
    // The first wake-up starts the copy; the second, once the copy has yielded, is lost.
    const test::ScopedEnvironment miss("SPLICER_TEST_MISS_WAKEUP", "2");
    test::XmppPair pair = test::xmpp_pair("sockmap");
    const auto& daemon = pair.daemon;
    UniqueFd& client = pair.client;
    UniqueFd& backend = pair.backend;

    const auto started = std::chrono::steady_clock::now();
    auto sent = std::async(std::launch::async, [&] {
        test::SendOptions options;
        options.max_bytes = kWakeupDownload;
        options.max_time = kWakeupDeadline;
        options.seed = kSeed;
        return test::send_stream(backend.get(), options);
    });
    std::this_thread::sleep_for(kClientWaits);
    test::ReadOptions reading;
    reading.max_bytes = kWakeupDownload;
    reading.max_time = kWakeupDeadline;
    const test::ReadReport read = test::read_stream(client.get(), reading);
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const test::SendReport send = sent.get();

    INFO(daemon->log_tail(10));
    INFO(test::daemon_stats(*daemon));
    INFO("client read " << read.bytes << " of " << kWakeupDownload << " in " << took
                        << " s, backend sent " << send.bytes << " " << send.error);
    WARN("16 MiB with a missed wake-up: " << took << " s");
    REQUIRE(read.bytes == kWakeupDownload);
    CHECK(read.sha256 == test::sha256_of_generated("", kSeed, kWakeupDownload));
    CHECK(read.sha256 == send.sha256);
    // The verdict did pass bytes up (else the hook had nothing to drop and this proves nothing).
    const auto missed = daemon->logs("wakeup_missed");
    REQUIRE(missed.size() == 1);
    CHECK(missed[0].get("dir") == "backend_to_client");
    CHECK(missed[0].number("owed").value_or(0) > 0);
    CHECK(missed[0].number("readable").value_or(0) > 0);
    client.reset();
    backend.reset();
    test::stop_daemon(*daemon);
}
