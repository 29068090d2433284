// Established connections moved between two event loops in one process (handoff,
// userspace/handoff/README.md): real EventLoops with real data planes, a real client and
// backend on loopback, transfers in flight both ways while the pair is exported from loop A,
// its records encoded, sent with its fds over a unix socket (SCM_RIGHTS) as an upgrade sends
// them, decoded, checked and adopted by loop B. Afterwards A holds nothing of it, and B
// finishes it: every byte both ways (sha256), the half-close after the move, a peer that
// closes right after its last write, the close and the counters.

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <array>
#include <cerrno>
#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bpf/pins.h"
#include "bpf/reused_maps.h"
#include "bpf_test_pins.h"
#include "daemon/event_loop.h"
#include "handoff/fd_check.h"
#include "handoff/wire.h"
#include "limits/admission.h"
#include "net/address.h"
#include "net/sockets.h"
#include "plane/copy_plane.h"
#include "plane/plane_factory.h"
#include "plane/splice_plane.h"
#include "splicer/config.h"
#include "splicer/router.h"
#include "support/daemon.h"
#include "support/privileged.h"
#include "support/sockets.h"
#include "support/streams.h"

using namespace splicer;
using namespace std::chrono_literals;
using splicer::test::Clock;

namespace {

constexpr std::uint32_t kSlots = 64;

// Opens (creates) a pin dir of the test's own.
bpf::PinDir& open_test_pins(std::optional<bpf::PinDir>& pins) {
    return pins.emplace(test::open_root_test_pin_dir());
}

// One plane per loop: copy and splice each their own; sockmap two sharing one program and
// its sockhash, pinned in a pin dir of the test's own (as a daemon's workers share them);
// sockmap-reused: B's program loaded onto the maps A's pinned, as the new process of
// `splicer upgrade` loads its own (bpf/reused_maps.h), so A's pairs are pairs of B's
// sockhash too and run A's verdict while B pairs new sockets under its own.
std::array<std::unique_ptr<plane::DataPlane>, 2> make_two_planes(
    const std::string& name, std::optional<bpf::PinDir>& pins,
    std::optional<bpf::PinDir>& reused_pins) {
    std::array<std::unique_ptr<plane::DataPlane>, 2> planes;
    if (name == "sockmap" || name == "sockmap-reused") {
        const bool reused = name == "sockmap-reused";
        bpf::PinDir& a_pins = open_test_pins(pins);
        // Fails (never skips) where BPF is unavailable: these tests run as root in CI.
        auto made =
            plane::make_planes(config::SpliceMode::sockmap, &a_pins, kSlots, reused ? 1 : 2);
        INFO((made ? std::string() : made.error().message));
        REQUIRE(made);
        planes[0] = std::move((*made)[0]);
        if (!reused) {
            planes[1] = std::move((*made)[1]);
            return planes;
        }
        auto maps = bpf::open_maps_to_reuse(a_pins.dir_fd(), a_pins.path(), 0);
        INFO((maps ? std::string() : maps.error().message));
        REQUIRE(maps);
        REQUIRE(maps->has_value());
        auto b = plane::make_planes(config::SpliceMode::sockmap, &open_test_pins(reused_pins),
                                    kSlots, 1, std::move(*maps));
        INFO((b ? std::string() : b.error().message));
        REQUIRE(b);
        planes[1] = std::move((*b)[0]);
        CHECK(planes[1]->upgrade_kind() == handoff::PlaneKind::sockmap);
        CHECK_FALSE(planes[0]->upgrade_kind().has_value());  // A made maps of its own
        planes[1]->took_over();
        return planes;
    }
    for (auto& plane : planes) {
        plane = name == "splice" ? plane::make_splice_plane() : plane::make_copy_plane();
    }
    return planes;
}

// Two event loops (workers 0 and 1 of one daemon, as it were) serving one listener on A and
// none on B, every rule to `backend_port`. Each runs on a thread of its own until the rig
// goes.
class TwoLoops {
public:
    TwoLoops(const std::string& plane_name, std::uint16_t backend_port) {
        port_ = test::free_port();
        const std::string text =
            "listen: ( { host: \"127.0.0.1\"; port: \"" + std::to_string(port_) +
            "\"; } );\n"
            "protocols: ( { name: \"anyprot\"; host: \"127.0.0.1\"; port: \"" +
            std::to_string(backend_port) + "\"; } );\n"
            "timeout: 5;\n";
        auto loaded = config::load_string(text);
        REQUIRE(loaded.ok());
        config_ = std::make_unique<config::Config>(std::move(*loaded.config));
        admission_ = std::make_unique<limits::Admission>(*config_, kSlots);
        std::vector<net::SocketAddress> backends;
        for (const config::Rule& rule : config_->rules) {
            auto address = net::resolve(rule.backend);
            REQUIRE(address);
            backends.push_back(*address);
        }
        planes_ = make_two_planes(plane_name, pins_, reused_pins_);
        for (std::uint32_t i = 0; i < 2; ++i) {
            planes_[i]->set_max_pipes(16);
            auto router = route::Router::create(*config_);
            REQUIRE(router);
            loops_[i] = std::make_unique<daemon::EventLoop>(
                *config_, std::move(*router), backends, *planes_[i], kSlots, *admission_,
                daemon::WorkerPlace{.index = i, .count = 2});
            REQUIRE(loops_[i]->init());
        }
        auto resolved = net::resolve(config::Endpoint{.host = "127.0.0.1", .port = port_});
        REQUIRE(resolved);
        const net::SocketAddress address = *resolved;
        auto listening = net::listen_on(address, 64);
        REQUIRE(listening);
        REQUIRE(loops_[0]->add_listener(
            daemon::ListeningSocket{.fd = std::move(*listening), .address = address}));
        for (std::uint32_t i = 0; i < 2; ++i) {
            threads_[i] = std::thread([this, i] { (void)loops_[i]->run(); });
        }
    }
    ~TwoLoops() {
        for (std::uint32_t i = 0; i < 2; ++i) {
            loops_[i]->post([loop = loops_[i].get()] { loop->stop(); });
        }
        for (auto& thread : threads_) {
            thread.join();
        }
    }
    TwoLoops(const TwoLoops&) = delete;
    TwoLoops& operator=(const TwoLoops&) = delete;

    [[nodiscard]] std::uint16_t port() const { return port_; }

    // `work(loop)` run on loop `index`'s thread; its value, or a failed REQUIRE after 10 s.
    template <typename Work>
    auto on(std::uint32_t index, Work work) {
        using Value = decltype(work(*loops_[index]));
        auto promise = std::make_shared<std::promise<Value>>();
        auto future = promise->get_future();
        daemon::EventLoop* loop = loops_[index].get();
        loop->post([promise, loop, work] { promise->set_value(work(*loop)); });
        REQUIRE(future.wait_for(10s) == std::future_status::ready);
        return future.get();
    }

    // Exports every connection of A it can (waits for the quiesce, at most 10 s).
    handoff::ExportOutcome export_from_a() {
        auto promise = std::make_shared<std::promise<handoff::ExportOutcome>>();
        auto future = promise->get_future();
        daemon::EventLoop* loop = loops_[0].get();
        loop->post([promise, loop] {
            loop->export_connections(
                [promise](handoff::ExportOutcome outcome) { promise->set_value(std::move(outcome)); });
        });
        REQUIRE(future.wait_for(10s) == std::future_status::ready);
        return future.get();
    }

    // The limits both loops share (a daemon's workers share theirs).
    [[nodiscard]] const limits::Admission& admission() const { return *admission_; }

    // Exports from A again (every 5 ms, at most 10 s) until at least `records` records came
    // out: the sockmap plane exports a pair only between copy rounds, any plane only once
    // its pair is spliced.
    handoff::ExportOutcome export_at_least(std::size_t records) {
        handoff::ExportOutcome exported = export_from_a();
        const auto deadline = Clock::now() + 10s;
        while (exported.batch.records.size() < records && Clock::now() < deadline) {
            std::this_thread::sleep_for(5ms);
            exported = export_from_a();
        }
        return exported;
    }

    [[nodiscard]] DaemonCounters counters(std::uint32_t index) {
        return on(index, [](daemon::EventLoop& loop) { return loop.counters(); });
    }

    // Waits (at most 15 s) until loop `index` counted `closed` closed connections.
    bool wait_closed(std::uint32_t index, std::uint64_t closed) {
        const auto deadline = Clock::now() + 15s;
        while (Clock::now() < deadline) {
            if (counters(index).closed >= closed) {
                return true;
            }
            std::this_thread::sleep_for(20ms);
        }
        return false;
    }

private:
    std::uint16_t port_ = 0;
    std::unique_ptr<config::Config> config_;
    std::unique_ptr<limits::Admission> admission_;
    std::optional<bpf::PinDir> pins_;  // sockmap: outlives the planes
    std::optional<bpf::PinDir> reused_pins_;  // sockmap-reused: B's
    std::array<std::unique_ptr<plane::DataPlane>, 2> planes_;
    std::array<std::unique_ptr<daemon::EventLoop>, 2> loops_;
    std::array<std::thread, 2> threads_;
};

// The batch's bytes and fds through a unix socket as an upgrade sends them (the fds arrive
// as new numbers; the sender's copies are closed), then decoded and checked as the
// receiving process does.
handoff::Batch pass_through_unix_socket(handoff::Batch batch) {
    const auto count = static_cast<std::uint32_t>(batch.fds.size());
    std::vector<std::byte> bytes = handoff::encode(batch.records, count);
    int pair[2] = {-1, -1};
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    UniqueFd sender(pair[0]);
    UniqueFd receiver(pair[1]);
    REQUIRE(count <= 250);  // one SCM_RIGHTS message (SCM_MAX_FD 253)
    // The length, with the fds.
    std::uint64_t length = bytes.size();
    iovec vector{.iov_base = &length, .iov_len = sizeof(length)};
    std::vector<char> control(CMSG_SPACE(sizeof(int) * std::max<std::uint32_t>(count, 1)));
    msghdr message{};
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    if (count > 0) {
        message.msg_control = control.data();
        message.msg_controllen = CMSG_SPACE(sizeof(int) * count);
        cmsghdr* header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * count);
        for (std::uint32_t i = 0; i < count; ++i) {
            const int fd = batch.fds[i].get();
            std::memcpy(CMSG_DATA(header) + i * sizeof(int), &fd, sizeof(int));
        }
    }
    REQUIRE(::sendmsg(sender.get(), &message, 0) == static_cast<ssize_t>(sizeof(length)));
    batch.fds.clear();  // the sender's copies: closed, as the old process's are at its exit
    std::jthread writer([&] { test::write_all(sender.get(), bytes.data(), bytes.size()); });

    std::uint64_t received_length = 0;
    iovec in_vector{.iov_base = &received_length, .iov_len = sizeof(received_length)};
    std::vector<char> in_control(CMSG_SPACE(sizeof(int) * 250));
    msghdr in{};
    in.msg_iov = &in_vector;
    in.msg_iovlen = 1;
    in.msg_control = in_control.data();
    in.msg_controllen = in_control.size();
    const ssize_t got = ::recvmsg(receiver.get(), &in, MSG_CMSG_CLOEXEC);
    handoff::Batch arrived;
    for (cmsghdr* header = CMSG_FIRSTHDR(&in); header != nullptr;
         header = CMSG_NXTHDR(&in, header)) {
        if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS) {
            const std::size_t fds = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < fds; ++i) {
                int fd = -1;
                std::memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
                arrived.fds.emplace_back(fd);
            }
        }
    }
    const std::string body = test::read_exactly(receiver.get(), received_length, 10000);
    writer.join();
    REQUIRE(got == static_cast<ssize_t>(sizeof(received_length)));
    REQUIRE(body.size() == received_length);
    REQUIRE(arrived.fds.size() == count);
    const auto* first = reinterpret_cast<const std::byte*>(body.data());
    auto records = handoff::decode(std::span(first, body.size()),
                                   static_cast<std::uint32_t>(arrived.fds.size()));
    INFO((records ? std::string() : records.error().message));
    REQUIRE(records);
    auto checked = handoff::check_fds(*records, arrived.fds);
    INFO((checked ? std::string() : checked.error().message));
    REQUIRE(checked);
    arrived.records = std::move(records).value();
    return arrived;
}

// Moves everything A can export to B, once `expect` records came out (export_at_least);
// returns what A's export said.
handoff::ExportOutcome move_a_to_b(TwoLoops& loops, std::size_t expect = 0) {
    handoff::ExportOutcome exported = loops.export_at_least(expect);
    std::vector<handoff::ConnectionRecord> records = exported.batch.records;
    handoff::Batch arrived = pass_through_unix_socket(std::move(exported.batch));
    const handoff::AdoptOutcome adopted = loops.on(1, [&arrived](daemon::EventLoop& loop) {
        return loop.adopt_connections(std::move(arrived));
    });
    INFO(adopted.first_refusal);
    REQUIRE(adopted.adopted == records.size());
    REQUIRE(adopted.refused == 0);
    exported.batch.records = std::move(records);
    return exported;
}

// The backend's side of the pair A connects (at most 10 s: a loop that never routes fails
// the test instead of hanging it).
UniqueFd accept_backend(const test::Listener& listener) {
    pollfd ready{.fd = listener.fd.get(), .events = POLLIN, .revents = 0};
    REQUIRE(::poll(&ready, 1, 10000) == 1);
    return test::accept_one(listener);
}

bool wait_until(const std::atomic<std::uint64_t>& progress, std::uint64_t at_least) {
    const auto deadline = Clock::now() + 10s;
    while (progress.load() < at_least && Clock::now() < deadline) {
        std::this_thread::sleep_for(5ms);
    }
    return progress.load() >= at_least;
}

// The one pair A serves, moved to B mid-transfer (move_a_to_b); then the readers slowed
// until the move (`rates`) run at full speed. Afterwards A holds nothing of it (no record,
// so no socket or pipe either) and closed nothing: the pair is B's to finish.
handoff::ExportOutcome move_the_pair_to_b(
    TwoLoops& loops, std::initializer_list<std::atomic<std::uint64_t>*> rates) {
    handoff::ExportOutcome moved = move_a_to_b(loops, 1);
    for (std::atomic<std::uint64_t>* rate : rates) {
        *rate = 0;
    }
    REQUIRE(moved.batch.records.size() == 1);
    CHECK(moved.left == 0);
    CHECK(moved.failed == 0);
    const DaemonCounters a = loops.counters(0);
    CHECK(a.active == 0);
    CHECK(a.closed == 0);
    return moved;
}

// A stream read whole: `prefix`, then `count` bytes of ByteGenerator(seed), then the FIN.
void check_arrived_whole(const test::ReadReport& got, std::string_view prefix,
                         std::uint64_t seed, std::uint64_t count) {
    INFO("the stream of seed " << seed);
    CHECK(got.bytes == prefix.size() + count);
    CHECK(got.sha256 == test::sha256_of_generated(prefix, seed, count));
    CHECK(got.eof);
}

// What direction `d` of an exported record still held: a copy round's bytes or a pipe's.
std::uint64_t held(const handoff::ConnectionRecord& record, std::size_t d) {
    return record.directions[d].buffered.size() + record.directions[d].in_pipe;
}

}  // namespace

TEST_CASE("handoff: a pair with transfers in flight both ways moves to another loop and finishes there byte-exact",
          "[handoff][privileged]") {
    test::require_root();
    const std::string plane_name = GENERATE("copy", "splice", "sockmap", "sockmap-reused");
    CAPTURE(plane_name);
    test::Listener backend_listener = test::listen_loopback();
    TwoLoops loops(plane_name, backend_listener.port);

    // copy and splice: both readers slow until the move, so both directions hold bytes in
    // the plane then (a buffer, a pipe). sockmap: the kernel holds them; a pair moves between
    // copy rounds, which slow readers would keep under way, so the readers run at full speed
    // and the streams are long enough to be in flight at the move.
    const bool sockmap = plane_name.starts_with("sockmap");
    const std::uint64_t kUp = sockmap ? 128ULL << 20 : 24ULL << 20;
    const std::uint64_t kDown = kUp;
    const std::uint64_t slow = sockmap ? 0 : 2ULL << 20;
    UniqueFd client = test::connect_loopback(loops.port());
    const std::string hello = "hello\n";  // routed on its first bytes (anyprot)
    test::write_all(client.get(), hello);
    UniqueFd backend = accept_backend(backend_listener);  // A connected on the first bytes
    std::atomic<std::uint64_t> client_rate{slow};
    std::atomic<std::uint64_t> backend_rate{slow};
    std::atomic<std::uint64_t> client_read{0};
    std::atomic<std::uint64_t> backend_read{0};
    test::SendReport up;
    test::SendReport down;
    test::ReadReport at_backend;
    test::ReadReport at_client;
    {
        // The client's FIN (its half-close) comes after the move: 24 MiB outlast it.
        std::jthread client_sender([&] {
            up = test::send_stream(client.get(), {.max_bytes = kUp, .max_time = 40s, .seed = 11,
                                                  .shutdown_after = true});
        });
        std::jthread backend_sender([&] {
            down = test::send_stream(backend.get(), {.max_bytes = kDown, .max_time = 40s,
                                                     .seed = 22, .shutdown_after = true});
        });
        std::jthread client_reader([&] {
            at_client = test::read_stream(client.get(), {.max_time = 40s, .rate = &client_rate,
                                                         .progress = &client_read});
        });
        std::jthread backend_reader([&] {
            at_backend = test::read_stream(backend.get(), {.max_time = 40s, .rate = &backend_rate,
                                                           .progress = &backend_read});
        });
        REQUIRE(wait_until(client_read, 1ULL << 20));
        REQUIRE(wait_until(backend_read, 1ULL << 20));

        const handoff::ExportOutcome moved =
            move_the_pair_to_b(loops, {&client_rate, &backend_rate});
        if (!sockmap) {
            // The move took state in flight with it: bytes the plane held for each sink.
            const handoff::ConnectionRecord& record = moved.batch.records.front();
            CHECK(held(record, 0) + held(record, 1) > 0);
        }
    }
    // Every byte both ways, each stream ending with its FIN.
    CHECK(up.error.empty());
    CHECK(down.error.empty());
    check_arrived_whole(at_backend, hello, 11, kUp);
    check_arrived_whole(at_client, "", 22, kDown);
    client.reset();
    backend.reset();
    // B closed it and counted it; A never did.
    REQUIRE(loops.wait_closed(1, 1));
    const DaemonCounters b = loops.counters(1);
    CHECK(b.active == 0);
    CHECK(b.closed == 1);
    CHECK(loops.counters(0).closed == 0);
}

TEST_CASE("handoff: a backend that closes right after its last write while its reply is in flight is delivered whole by the adopting loop",
          "[handoff][privileged]") {
    test::require_root();
    const std::string plane_name = GENERATE("copy", "splice", "sockmap");
    CAPTURE(plane_name);
    test::Listener backend_listener = test::listen_loopback();
    TwoLoops loops(plane_name, backend_listener.port);

    // As above: the sockmap pair moves between copy rounds, with a fast reader.
    const bool sockmap = plane_name == "sockmap";
    const std::uint64_t kReply = sockmap ? 128ULL << 20 : 16ULL << 20;
    // The client's half-close comes after the reply (a socket that half-closed before it
    // was paired is refused by the sockhash: the sockmap plane serves it through its copy
    // fallback, which does not move).
    UniqueFd client = test::connect_loopback(loops.port());
    test::write_all(client.get(), std::string("request\n"));
    UniqueFd backend = accept_backend(backend_listener);
    // The backend reads the request, then replies and closes at once (nothing unread: a FIN).
    CHECK(test::read_exactly(backend.get(), 8) == "request\n");
    std::atomic<std::uint64_t> client_rate{sockmap ? 0 : 1ULL << 20};
    std::atomic<std::uint64_t> client_read{0};
    test::SendReport reply;
    test::ReadReport at_client;
    {
        std::jthread backend_sender([&] {
            reply = test::send_stream(backend.release(), {.max_bytes = kReply, .max_time = 40s,
                                                          .seed = 33, .close_after = true});
        });
        std::jthread client_reader([&] {
            at_client = test::read_stream(client.get(), {.max_time = 40s, .rate = &client_rate,
                                                         .progress = &client_read});
        });
        REQUIRE(wait_until(client_read, 512ULL << 10));
        (void)move_the_pair_to_b(loops, {&client_rate});
    }
    CHECK(reply.error.empty());
    check_arrived_whole(at_client, "", 33, kReply);
    // The client ends its side last: B finishes and closes the pair.
    REQUIRE(::shutdown(client.get(), SHUT_WR) == 0);
    REQUIRE(loops.wait_closed(1, 1));
    CHECK(loops.counters(1).active == 0);
}

namespace {

// What `fd` reads next within 5 s: its bytes, "" at its FIN, "reset" at a RST, "timeout".
std::string next_read(int fd) {
    pollfd ready{.fd = fd, .events = POLLIN, .revents = 0};
    if (::poll(&ready, 1, 5000) != 1) {
        return "timeout";
    }
    char buffer[256];
    const ssize_t got = ::recv(fd, buffer, sizeof(buffer), 0);
    if (got < 0) {
        return errno == ECONNRESET ? "reset" : "error " + std::to_string(errno);
    }
    return std::string(buffer, static_cast<std::size_t>(got));
}

// Until `fd` is closed at the TCP level (getpeername fails), at most 5 s.
bool wait_not_connected(int fd) {
    const auto deadline = Clock::now() + 5s;
    while (Clock::now() < deadline) {
        sockaddr_storage peer{};
        socklen_t length = sizeof(peer);
        if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length) != 0) {
            return true;
        }
        std::this_thread::sleep_for(5ms);
    }
    return false;
}

}  // namespace

// Between the old loop's export and the new loop's adopt nobody serves a pair: at an upgrade
// a peer may reset it, or finish it both ways, meanwhile. The batch is adopted whole all the
// same, and each pair ends as the old loop would have ended it.
TEST_CASE("handoff: a pair reset and a pair closed both ways between export and adopt do not stop their batch",
          "[handoff][privileged]") {
    test::require_root();
    const std::string plane_name = GENERATE("copy", "splice");
    CAPTURE(plane_name);
    test::Listener backend_listener = test::listen_loopback();
    TwoLoops loops(plane_name, backend_listener.port);
    // 0 goes on, 1's backend resets, 2's backend replies and closes after its client's FIN.
    std::array<UniqueFd, 3> clients;
    std::array<UniqueFd, 3> backends;
    for (std::size_t i = 0; i < 3; ++i) {
        clients[i] = test::connect_loopback(loops.port());
        test::write_all(clients[i].get(), std::string("request\n"));
        backends[i] = accept_backend(backend_listener);
        REQUIRE(test::read_exactly(backends[i].get(), 8) == "request\n");
    }
    REQUIRE(::shutdown(clients[2].get(), SHUT_WR) == 0);
    REQUIRE(next_read(backends[2].get()).empty());  // the FIN went through: A shut that sink

    handoff::ExportOutcome exported = loops.export_at_least(3);
    REQUIRE(exported.batch.records.size() == 3);
    // Now, with the pairs between two loops: a RST to 1's backend socket, and 2's last bytes
    // and FIN, which move its backend socket to CLOSE (it had sent its own FIN).
    const linger abortive{.l_onoff = 1, .l_linger = 0};
    REQUIRE(::setsockopt(backends[1].get(), SOL_SOCKET, SO_LINGER, &abortive,
                         sizeof(abortive)) == 0);
    backends[1].reset();
    test::write_all(backends[2].get(), std::string("reply\n"));
    backends[2].reset();
    for (const handoff::ConnectionRecord& record : exported.batch.records) {
        if (record.directions[0].sink_shut) {  // 2's: its client's FIN was delivered
            REQUIRE(wait_not_connected(exported.batch.fds[record.backend].get()));
        }
    }
    // The fd check passes them (pass_through_unix_socket requires it), B adopts all three.
    handoff::Batch arrived = pass_through_unix_socket(std::move(exported.batch));
    const handoff::AdoptOutcome adopted = loops.on(1, [&arrived](daemon::EventLoop& loop) {
        return loop.adopt_connections(std::move(arrived));
    });
    INFO(adopted.first_refusal);
    CHECK(adopted.adopted == 3);
    CHECK(adopted.refused == 0);

    // 0 goes on both ways through B.
    test::write_all(clients[0].get(), std::string("more\n"));
    CHECK(test::read_exactly(backends[0].get(), 5) == "more\n");
    test::write_all(backends[0].get(), std::string("back\n"));
    CHECK(test::read_exactly(clients[0].get(), 5) == "back\n");
    // 1's reset reaches its client as a reset.
    CHECK(next_read(clients[1].get()) == "reset");
    // 2's last bytes, then its FIN.
    CHECK(test::read_exactly(clients[2].get(), 6) == "reply\n");
    CHECK(next_read(clients[2].get()).empty());
    REQUIRE(loops.wait_closed(1, 2));
    CHECK(loops.counters(1).active == 1);
}

// A client socket that closes while its pair is between two loops (its peer's RST) answers
// no getpeername in the adopting one: its address comes from the record (wire version 3),
// so per-client limits and the adopted line go on naming the client. On the splice plane:
// its adoption only submits the splices, so the pair is still held when adopt_connections
// returns and what it was admitted as can be read (the copy plane's adoption reads the reset
// at once and ends the pair within adopt_connections).
TEST_CASE("handoff: a client socket reset between export and adopt keeps its client address",
          "[handoff][privileged]") {
    test::require_root();
    test::Listener backend_listener = test::listen_loopback();
    TwoLoops loops("splice", backend_listener.port);
    UniqueFd client = test::connect_loopback(loops.port());
    const net::SocketAddress client_address = net::local_address(client.get());
    const std::string client_key = net::host_key(client_address);
    test::write_all(client.get(), std::string("request\n"));
    UniqueFd backend = accept_backend(backend_listener);
    REQUIRE(test::read_exactly(backend.get(), 8) == "request\n");
    CHECK(loops.admission().from_client(client_key) == 1);

    handoff::ExportOutcome exported = loops.export_at_least(1);
    REQUIRE(exported.batch.records.size() == 1);
    const handoff::ConnectionRecord& record = exported.batch.records[0];
    const net::AddressParts parts = net::parts_of(client_address);
    CHECK(record.client_peer.family == 4);
    CHECK(record.client_peer.port == parts.port);
    CHECK(record.client_peer.address == parts.bytes);
    CHECK(loops.admission().from_client(client_key) == 0);  // released by A
    // The client resets its connection while nobody serves the pair.
    const linger abortive{.l_onoff = 1, .l_linger = 0};
    REQUIRE(::setsockopt(client.get(), SOL_SOCKET, SO_LINGER, &abortive, sizeof(abortive)) == 0);
    client.reset();
    REQUIRE(wait_not_connected(exported.batch.fds[record.client].get()));

    handoff::Batch arrived = pass_through_unix_socket(std::move(exported.batch));
    // Counted on B's thread right after the adoption, before B's loop reads the reset.
    const auto [adopted, counted] =
        loops.on(1, [&arrived, &loops, &client_key](daemon::EventLoop& loop) {
            const handoff::AdoptOutcome outcome = loop.adopt_connections(std::move(arrived));
            return std::pair{outcome.adopted, loops.admission().from_client(client_key)};
        });
    CHECK(adopted == 1);
    CHECK(counted == 1);
    // B ends the pair as A would have: the reset goes on to the backend.
    CHECK(next_read(backend.get()) == "reset");
    REQUIRE(loops.wait_closed(1, 1));
    CHECK(loops.admission().from_client(client_key) == 0);
}

TEST_CASE("handoff: export leaves connections still probing with the old loop and says how many",
          "[handoff][privileged]") {
    test::require_root();
    test::Listener backend_listener = test::listen_loopback();
    TwoLoops loops("copy", backend_listener.port);
    // A client that sent nothing yet: probing (timeout 5 s), not movable.
    UniqueFd silent = test::connect_loopback(loops.port());
    const auto deadline = Clock::now() + 5s;
    while (loops.counters(0).active < 1 && Clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
    }
    REQUIRE(loops.counters(0).active == 1);
    const handoff::ExportOutcome moved = move_a_to_b(loops);
    CHECK(moved.batch.records.empty());
    CHECK(moved.left == 1);
    CHECK(loops.counters(0).active == 1);  // still A's, which drains it
    CHECK(loops.counters(1).active == 0);
}
