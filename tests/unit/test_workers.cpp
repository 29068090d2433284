// What `workers` is made of, on real sockets and plain data: a listener group on one port
// (net/listen_group.h), the counters summed over workers (metrics/counters_sum.h), the CPUs
// the loops are pinned to (daemon/worker_cpus.h) and the mailbox a loop is told through
// (daemon/mailbox.h).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "daemon/mailbox.h"
#include "daemon/worker_cpus.h"
#include "metrics/counters_sum.h"
#include "net/listen_group.h"
#include "net/sockets.h"
#include "support/net_address.h"

namespace {

std::uint16_t port_of(int fd) {
    const splicer::net::SocketAddress bound = splicer::net::local_address(fd);
    return ntohs(reinterpret_cast<const sockaddr_in*>(&bound.storage)->sin_port);
}

void set_series(splicer::RuleSeries& series, const char* rule, std::uint64_t routed) {
    std::strncpy(series.rule, rule, sizeof(series.rule) - 1);
    std::strncpy(series.protocol, "tls", sizeof(series.protocol) - 1);
    series.routed[0] = routed;
}

}  // namespace

TEST_CASE("listen_group: one port, one socket per worker, every socket accepting a share",
          "[workers]") {
    auto group = splicer::net::listen_group(splicer::test::loopback_v4(0), 64, 2);
    REQUIRE(group.has_value());
    REQUIRE(group->size() == 2);
    const std::uint16_t port = port_of((*group)[0].get());
    CHECK(port != 0);
    CHECK(port_of((*group)[1].get()) == port);
    // The kernel hashes each connection's addresses to one socket of the group: 64
    // connections from distinct source ports reach both.
    std::vector<splicer::UniqueFd> clients;
    for (int i = 0; i < 64; ++i) {
        splicer::UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        const auto address = splicer::test::loopback_v4(port);
        REQUIRE(::connect(client.get(), address.get(), address.length) == 0);
        clients.push_back(std::move(client));
    }
    int accepted[2] = {0, 0};
    for (int i = 0; i < 2; ++i) {
        for (int n = 0; n < 64; ++n) {
            splicer::UniqueFd taken(::accept4((*group)[i].get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (!taken) {
                break;  // non-blocking listener: its queue is empty
            }
            ++accepted[i];
        }
    }
    CHECK(accepted[0] + accepted[1] == 64);
    CHECK(accepted[0] > 0);
    CHECK(accepted[1] > 0);
}

TEST_CASE("listen_group: a port another socket listens on is refused, as for one worker",
          "[workers]") {
    auto taken = splicer::net::listen_on(splicer::test::loopback_v4(0), 16);
    REQUIRE(taken.has_value());
    const std::uint16_t port = port_of(taken->get());
    for (const std::uint32_t workers : {1U, 2U, 4U}) {
        CAPTURE(workers);
        auto group = splicer::net::listen_group(splicer::test::loopback_v4(port), 16, workers);
        REQUIRE_FALSE(group.has_value());
        CHECK_THAT(group.error().message, Catch::Contains("Address already in use"));
    }
    // A group already there is refused too: a second daemon does not join its SO_REUSEPORT
    // group and take a share of its clients.
    auto first = splicer::net::listen_group(splicer::test::loopback_v4(0), 16, 2);
    REQUIRE(first.has_value());
    auto second = splicer::net::listen_group(
        splicer::test::loopback_v4(port_of(first->front().get())), 16, 2);
    REQUIRE_FALSE(second.has_value());
    CHECK_THAT(second.error().message, Catch::Contains("Address already in use"));
}

TEST_CASE("add_counters: counts add up, rule series by name, process-wide values once",
          "[workers][metrics]") {
    splicer::DaemonCounters first{};
    splicer::DaemonCounters second{};
    first.accepted = 10;
    second.accepted = 7;
    first.active = 2;
    second.active = 3;
    first.bytes[0][1] = 100;
    second.bytes[0][1] = 5;
    first.http_responses[100] = 4;
    second.http_responses[100] = 1;
    first.log_dropped = 9;  // one log buffer for the process: each worker reads the same
    second.log_dropped = 9;
    first.reloads_ok = 1;
    // The two workers met the rules in different orders (a reload between their first
    // connections): series add by name, not by index.
    first.rule_series_count = 2;
    set_series(first.rule_series[0], "tls -> a", 3);
    set_series(first.rule_series[1], "tls -> b", 4);
    second.rule_series_count = 2;
    set_series(second.rule_series[0], "tls -> b", 40);
    set_series(second.rule_series[1], "tls -> c", 50);
    splicer::DaemonCounters total{};
    splicer::metrics::add_counters(total, first);
    splicer::metrics::add_counters(total, second);
    CHECK(total.accepted == 17);
    CHECK(total.active == 5);
    CHECK(total.bytes[0][1] == 105);
    CHECK(total.http_responses[100] == 5);
    CHECK(total.log_dropped == 9);
    CHECK(total.reloads_ok == 1);
    REQUIRE(total.rule_series_count == 3);
    CHECK(std::string(total.rule_series[0].rule) == "tls -> a");
    CHECK(total.rule_series[0].routed[0] == 3);
    CHECK(std::string(total.rule_series[1].rule) == "tls -> b");
    CHECK(total.rule_series[1].routed[0] == 44);
    CHECK(std::string(total.rule_series[2].rule) == "tls -> c");
    CHECK(total.rule_series[2].routed[0] == 50);
}

TEST_CASE("CountersBoard: the sum of every worker's latest snapshot, in order",
          "[workers][metrics]") {
    splicer::metrics::CountersBoard board(2);
    std::vector<std::uint64_t> sums;
    const auto sink = [&sums](const splicer::DaemonCounters& total) {
        sums.push_back(total.accepted);
    };
    splicer::DaemonCounters counters{};
    counters.accepted = 5;
    board.publish(0, counters, sink);  // worker 1 not heard from yet: counts as zero
    counters.accepted = 3;
    board.publish(1, counters, sink);
    counters.accepted = 6;
    board.publish(0, counters, sink);  // replaces worker 0's 5, not added to it
    CHECK(sums == std::vector<std::uint64_t>{5, 8, 9});
}

TEST_CASE("worker CPUs: the allowed ones, one worker each by default, pinning holds",
          "[workers]") {
    const std::vector<int> cpus = splicer::daemon::allowed_cpus();
    REQUIRE_FALSE(cpus.empty());
    CHECK(splicer::daemon::worker_count(0, cpus) == cpus.size());
    CHECK(splicer::daemon::worker_count(3, cpus) == 3);
    CHECK(splicer::daemon::worker_count(5000, cpus) == 1024);
    CHECK(splicer::daemon::cpu_list({0, 2, 5}) == "0,2,5");
    // Pinned on a thread of its own, which then runs on that CPU alone.
    std::vector<int> seen;
    std::thread pinned([&] {
        REQUIRE(splicer::daemon::pin_this_thread(cpus.back()).has_value());
        seen = splicer::daemon::allowed_cpus();
    });
    pinned.join();
    CHECK(seen == std::vector<int>{cpus.back()});
}

TEST_CASE("Mailbox: work posted from other threads runs on the reader, in order, once each",
          "[workers]") {
    splicer::daemon::Mailbox mailbox;
    REQUIRE(mailbox.init().has_value());
    std::vector<int> ran;
    std::thread poster([&] {
        for (int i = 0; i < 100; ++i) {
            mailbox.post([&ran, i] { ran.push_back(i); });
        }
    });
    poster.join();
    pollfd readable{.fd = mailbox.wake_fd(), .events = POLLIN, .revents = 0};
    REQUIRE(::poll(&readable, 1, 1000) == 1);
    REQUIRE(::read(mailbox.wake_fd(), mailbox.wake_buffer(), sizeof(std::uint64_t)) == 8);
    mailbox.run_posted();
    REQUIRE(ran.size() == 100);
    for (int i = 0; i < 100; ++i) {
        CHECK(ran[static_cast<std::size_t>(i)] == i);
    }
    mailbox.run_posted();  // nothing left: nothing runs twice
    CHECK(ran.size() == 100);
}
