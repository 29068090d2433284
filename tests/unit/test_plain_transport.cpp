// daemon::PlainTransport on a real io_uring and a loopback TCP pair: a send is first tried
// without waiting; what fits is reported at once, and a send that finds no room waits for it
// under its timeout (reporting -ECANCELED when the peer never reads) or goes on once the
// peer reads (daemon/transport.h).

#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "daemon/http_exchange.h"
#include "daemon/transport.h"
#include "support/sockets.h"
#include "uring/ring.h"

namespace splicer::test {
namespace {

using daemon::HttpOp;
using namespace std::chrono_literals;

// The exchange's part for a plain transport: tags each operation with its op code, records
// the reports (kind 's' sent, 'r' read, with the result).
struct PlainHarness final : daemon::TransportRing, daemon::TransportUser {
    uring::Ring ring;
    std::vector<std::pair<char, int>> reports;
    int operations = 0;  // every SQE, linked timeouts included
    daemon::Transport* transport = nullptr;

    PlainHarness() { REQUIRE(uring::Ring::init(ring, 64)); }

    io_uring_sqe* transport_sqe(HttpOp op, http::Side /*side*/) override {
        ++operations;
        io_uring_sqe* sqe = ring.sqe();
        sqe->user_data = static_cast<std::uint64_t>(op);
        return sqe;
    }
    void on_read(http::Side /*side*/, int result) override { reports.emplace_back('r', result); }
    void on_sent(http::Side /*side*/, int result) override { reports.emplace_back('s', result); }
    void on_closed(http::Side /*side*/, int result) override { reports.emplace_back('c', result); }

    // Runs the ring until the transport reports (at most 10 s); the report.
    std::pair<char, int> next() {
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (reports.empty() && std::chrono::steady_clock::now() < deadline) {
            ring.submit_and_wait(100);
            ring.drain([this](const uring::Completion& cqe) {
                const auto op = static_cast<HttpOp>(cqe.user_data);
                if (op != HttpOp::http_timeout) {
                    transport->on_completion(op, cqe.res);
                }
            });
        }
        REQUIRE_FALSE(reports.empty());
        const auto report = reports.front();
        reports.erase(reports.begin());
        return report;
    }
};

}  // namespace

TEST_CASE("plain transport: a send that fits goes out in one operation, without a timeout",
          "[http]") {
    auto [ours, peer] = tcp_pair();
    PlainHarness harness;
    daemon::PlainTransport transport(ours, http::Side::client, harness, harness);
    harness.transport = &transport;
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
    transport.send({head.data(), head.size()}, 5s);
    const auto report = harness.next();
    CHECK(report == std::pair<char, int>{'s', static_cast<int>(head.size())});
    CHECK(harness.operations == 1);  // no linked timeout
    CHECK(read_exactly(peer.get(), head.size()) == head);
}

TEST_CASE("plain transport: a send that finds no room waits under its timeout, or until read",
          "[http]") {
    auto [ours, peer] = tcp_pair();
    PlainHarness harness;
    daemon::PlainTransport transport(ours, http::Side::backend, harness, harness);
    harness.transport = &transport;
    // More than the socket buffers on the way hold: the first try takes what fits.
    const std::string bulk(32 << 20, 'x');
    std::size_t sent = 0;
    transport.send({bulk.data(), bulk.size()}, 300ms);
    auto report = harness.next();
    REQUIRE(report.first == 's');
    REQUIRE(report.second > 0);
    REQUIRE(static_cast<std::size_t>(report.second) < bulk.size());
    sent += static_cast<std::size_t>(report.second);

    // The rest finds no room (the peer reads nothing): it waits, and the timeout ends it.
    // (A send buffer that TCP grows meanwhile may take a little more first.)
    auto waited = std::chrono::steady_clock::duration::zero();
    for (int round = 0; round < 100 && report.second > 0; ++round) {
        const auto started = std::chrono::steady_clock::now();
        transport.send({bulk.data() + sent, bulk.size() - sent}, 300ms);
        report = harness.next();
        waited = std::chrono::steady_clock::now() - started;
        sent += report.second > 0 ? static_cast<std::size_t>(report.second) : 0;
    }
    CHECK(report == std::pair<char, int>{'s', -ECANCELED});
    CHECK(waited >= 250ms);
    REQUIRE(sent < bulk.size());

    // Once the peer reads, a waiting send goes on.
    std::thread reader([&peer = peer] { (void)read_exactly(peer.get(), 1 << 20, 5000); });
    transport.send({bulk.data() + sent, bulk.size() - sent}, 5s);
    report = harness.next();
    reader.join();
    CHECK(report.first == 's');
    CHECK(report.second > 0);
}

TEST_CASE("plain transport: close_write sends the FIN at once and reports it in one operation, "
          "or reports why it could not",
          "[http]") {
    auto [ours, peer] = tcp_pair();
    PlainHarness harness;
    daemon::PlainTransport transport(ours, http::Side::client, harness, harness);
    harness.transport = &transport;
    transport.close_write(5s);
    // The FIN is out before the ring even runs (no io-wq round trip).
    char byte = 0;
    CHECK(::recv(peer.get(), &byte, 1, MSG_DONTWAIT) == 0);
    CHECK(harness.next() == std::pair<char, int>{'c', 0});
    CHECK(harness.operations == 1);

    // A socket that was never connected cannot be shut: the error comes back as the result.
    const UniqueFd unconnected(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(unconnected.valid());
    PlainHarness failing;
    daemon::PlainTransport never_connected(unconnected, http::Side::client, failing, failing);
    failing.transport = &never_connected;
    never_connected.close_write(5s);
    CHECK(failing.next() == std::pair<char, int>{'c', -ENOTCONN});
}

}  // namespace splicer::test
