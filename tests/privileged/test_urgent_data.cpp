// TCP urgent data (send(..., MSG_OOB)) through the daemon, on every data plane and both ways.
// The policy (README "Data planes"): the urgent byte is not delivered, every other byte is,
// in order, and the connection goes on; this is what a reader with default socket options
// sees when connected directly, and what nginx and HAProxy deliver. Each urgent byte is
// counted (`urgent_bytes_dropped` in `splicer stats`).
//
// The urgent byte is placed everywhere an skb can hold it: the last byte of a segment with
// data before it, the middle of a segment (TCP_CORK gathers bytes before and after it), the
// first byte of a segment, and a segment of its own. Each urgent send is followed by plain
// data and checked before the next one: a second urgent mark arriving before a reader passed
// the first turns the first into plain data, for a direct reader as for splicer.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "daemon_test_common.h"

namespace test = splicer::test;
using namespace std::chrono_literals;
using splicer::UniqueFd;

namespace {

constexpr int kReadTimeoutMs = 4000;
// Urgent bytes each side sends (one per position an skb can hold it).
constexpr std::uint64_t kUrgentPerSide = 4;

void cork(int fd, bool on) {
    const int value = on ? 1 : 0;
    REQUIRE(::setsockopt(fd, IPPROTO_TCP, TCP_CORK, &value, sizeof(value)) == 0);
}

void send_urgent(int fd, const std::string& bytes) {
    // The urgent byte is the last byte of the buffer sent with MSG_OOB.
    REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_OOB | MSG_NOSIGNAL) ==
            static_cast<ssize_t>(bytes.size()));
}

std::chrono::milliseconds daemon_cpu(const test::DaemonProcess& daemon) {
    return test::cpu_time(daemon.pid()).value_or(0ms);
}

// Sends the urgent script from `sender` and checks, step by step, that `receiver` gets every
// byte but the urgent ones, in order.
void urgent_script(int sender, int receiver, std::uint64_t seed,
                   const test::DaemonProcess& daemon) {
    test::ByteGenerator bytes(seed);
    const auto started_cpu = daemon_cpu(daemon);
    const auto started = test::Clock::now();
    // Reads exactly what `step` should have delivered; on a shortfall says how much CPU the
    // daemon burnt meanwhile (a relay stuck at an urgent mark spun at ~95 % of a core).
    auto expect = [&](const char* step, const std::string& wanted) {
        const std::string got = test::read_exactly(receiver, wanted.size(), kReadTimeoutMs);
        const auto wall =
            std::chrono::duration_cast<std::chrono::milliseconds>(test::Clock::now() - started);
        INFO("step " << step << ": got " << got.size() << " of " << wanted.size()
                     << " bytes; daemon CPU " << (daemon_cpu(daemon) - started_cpu).count()
                     << " ms in " << wall.count() << " ms; log:\n"
                     << daemon.log_tail(20));
        REQUIRE(got.size() == wanted.size());
        REQUIRE(test::sha256_hex(got) == test::sha256_hex(wanted));
    };

    const std::string a = bytes.take(64 * 1024);
    test::write_all(sender, a);
    expect("data", a);

    // Urgent byte last in a segment with data before it.
    const std::string tail_lead = bytes.take(1000);
    send_urgent(sender, tail_lead + "U");
    expect("urgent byte last in its segment", tail_lead);
    const std::string b = bytes.take(64 * 1024);
    test::write_all(sender, b);
    expect("data after the urgent byte", b);

    // Urgent byte in the middle of one segment: corked, the three sends leave as one.
    const std::string middle_lead = bytes.take(500);
    const std::string middle_rest = bytes.take(500);
    cork(sender, true);
    test::write_all(sender, middle_lead);
    send_urgent(sender, "V");
    test::write_all(sender, middle_rest);
    cork(sender, false);
    expect("urgent byte in the middle of its segment", middle_lead + middle_rest);
    const std::string c = bytes.take(32 * 1024);
    test::write_all(sender, c);
    expect("data after the middle urgent byte", c);

    // Urgent byte first in its segment.
    const std::string head_rest = bytes.take(700);
    cork(sender, true);
    send_urgent(sender, "W");
    test::write_all(sender, head_rest);
    cork(sender, false);
    expect("urgent byte first in its segment", head_rest);
    const std::string d = bytes.take(32 * 1024);
    test::write_all(sender, d);
    expect("data after the first-byte urgent byte", d);

    // An urgent byte alone, then more data.
    send_urgent(sender, "Z");
    const std::string e = bytes.take(64 * 1024);
    test::write_all(sender, e);
    expect("data after a lone urgent byte", e);
}

}  // namespace

TEST_CASE(
    "urgent data: every other byte arrives in order, urgent bytes dropped and counted, "
    "no spin",
    "[daemon][urgent][serial]") {
    test::require_root();
    SPLICER_FOR_EACH_PLANE(plane);
    test::Listener backend_listener = test::listen_loopback();
    const std::uint16_t unused = test::free_port();
    const test::SnikketPorts ports{.listen = test::free_port(),
                                   .xmpp_tls = unused,
                                   .https = unused,
                                   .xmpp = backend_listener.port};
    auto daemon = test::start_daemon(plane, test::snikket_config(ports));

    const std::string header = test::xmpp_stream_header();
    UniqueFd client = test::connect_and_send(ports.listen, header, "");
    pollfd incoming{backend_listener.fd.get(), POLLIN, 0};
    REQUIRE(::poll(&incoming, 1, 5000) == 1);
    UniqueFd backend = test::accept_one(backend_listener);
    REQUIRE(test::read_exactly(backend.get(), header.size(), kReadTimeoutMs) == header);

    const auto cpu_before = daemon_cpu(*daemon);
    urgent_script(client.get(), backend.get(), 11, *daemon);
    urgent_script(backend.get(), client.get(), 22, *daemon);

    // Idle after the urgent bytes: a relay stuck at an urgent mark burns a core here.
    const auto idle_from = daemon_cpu(*daemon);
    std::this_thread::sleep_for(1500ms);
    const auto idle_cpu = daemon_cpu(*daemon) - idle_from;
    INFO("daemon CPU: " << (idle_from - cpu_before).count() << " ms for both scripts, "
                        << idle_cpu.count() << " ms over 1500 ms idle");
    CHECK(idle_cpu.count() < 150);  // ms; the stuck splice plane burnt ~1000-1400 here

    // The connection goes on: more bytes each way, half-close, a clean end.
    const std::string more(10'000, 'm');
    test::write_all(client.get(), more);
    CHECK(test::read_exactly(backend.get(), more.size(), kReadTimeoutMs) == more);
    REQUIRE(::shutdown(client.get(), SHUT_WR) == 0);
    CHECK(test::wait_for_close(backend.get(), 5s) == "eof");
    const std::string last(20'000, 'l');
    test::write_all(backend.get(), last);
    REQUIRE(::shutdown(backend.get(), SHUT_WR) == 0);
    CHECK(test::read_exactly(client.get(), last.size(), kReadTimeoutMs) == last);
    CHECK(test::wait_for_close(client.get(), 5s) == "eof");
    const auto closed = daemon->wait_for_log("closed", {}, 5s);
    REQUIRE(closed.has_value());
    CHECK(closed->get("end") == "done");

    CHECK(test::wait_for_counter(*daemon, "urgent_bytes_dropped", 2 * kUrgentPerSide) ==
          2 * kUrgentPerSide);
    test::stop_daemon(*daemon);
}
