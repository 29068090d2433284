// The sockmap plane copies the bytes its verdict passed up (flow control). recv() on a
// sockmap socket reads only the psock's ingress list, and with that list empty and the FIN in
// it returns 0 (tcp_bpf_recvmsg_parser, SOCK_DONE), while passes the kernel deferred onto the
// psock's backlog queue, behind redirected bytes waiting for a slow reader's send buffer
// (DESIGN.md kernel fact 8), are still on their way: the plane reads an EOF before the last
// passed bytes, and its EOF rule copies them when they land (EofStep::copy_late_pass). Such a
// copy yielded after one turn (8 buffers) by re-arming the source's poll, but an ended
// source's poll is ignored (on_source_event), so nothing came back to it: under CPU load a
// 16 MiB transfer each way stopped with 11-13 MB passed and unread, both sockets in
// CLOSE-WAIT, exactly 128 KiB (one turn of 16 KiB buffers) copied each way after the EOF.
//
// The deferral needs the psock's backlog worker to run late (CPU load), so a test build (CMake
// Debug: the debug and ASan flavours) lets SPLICER_TEST_EARLY_EOF take the first source
// wake-up that finds passed bytes readable once the source's FIN is in for that EOF, as the
// kernel answers while they are deferred. Everything after it is the production code.

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "daemon_test_common.h"
#include "support/command.h"
#include "support/raw_client.h"
#include "support/scoped_environment.h"
#include "support/sockets.h"
#include "support/streams.h"

namespace test = splicer::test;
using namespace std::chrono_literals;
using splicer::UniqueFd;

namespace {

constexpr std::uint64_t kLatePassSeed = 2211;
// Passed bytes left unread on the daemon's backend socket before the backend half-closes:
// more than the copy that was under way (one 16 KiB buffer, then seven more once the client
// reads) plus one whole turn of 8 x 16 KiB after the EOF, i.e. more than 256 KiB; and well
// under that socket's receive window (its buffer is braked to 1 MiB), so the rest of the
// backend's bytes and its FIN still get in.
constexpr std::uint64_t kLatePassUnread = 512 * 1024;
// The backend's own send buffer (SO_SNDBUF, doubled by the kernel): what it holds unsent
// when it stops must fit in the daemon socket's window too.
constexpr int kLatePassBackendSendBuffer = 32 * 1024;
constexpr std::size_t kLatePassChunk = 16 * 1024;
constexpr std::size_t kLatePassChunksPerLook = 8;
constexpr auto kLatePassSetupDeadline = 30s;
// Once the client reads, ~3 MiB over loopback take milliseconds; without the fix the copy
// never comes back and the transfer never ends.
constexpr auto kLatePassReadDeadline = 15s;

// The receive queue (rcv_nxt - copied_seq) of the established TCP socket bound to
// `local_port` and connected to `remote_port` (`ss`, filtered in the kernel: /proc/net/tcp
// took seconds to read with other tests holding 78,000 sockets): for a socket in a
// sockhash, the bytes its verdict passed up and nobody read yet (redirected ones are
// consumed at once).
std::optional<std::uint64_t> late_pass_receive_queue(std::uint16_t local_port,
                                                     std::uint16_t remote_port) {
    const test::CommandResult result =
        test::run_command("ss -tnH state established '( sport = :" + std::to_string(local_port) +
                          " and dport = :" + std::to_string(remote_port) + " )'");
    std::istringstream fields(result.output);
    std::uint64_t receive_queue = 0;
    if (!(fields >> receive_queue)) {
        return std::nullopt;
    }
    return receive_queue;
}

std::uint16_t late_pass_port(int fd, bool peer) {
    sockaddr_in address{};
    socklen_t length = sizeof(address);
    const int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length)
                        : ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    REQUIRE(rc == 0);
    return ntohs(address.sin_port);
}

std::uint8_t late_pass_tcp_state(int fd) {
    tcp_info info{};
    socklen_t length = sizeof(info);
    REQUIRE(::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) == 0);
    return info.tcpi_state;
}

int late_pass_unsent(int fd) {
    int bytes = 0;
    REQUIRE(::ioctl(fd, SIOCOUTQ, &bytes) == 0);
    return bytes;
}

}  // namespace

TEST_CASE("sockmap: passed bytes landing after the EOF was read are all copied before the EOF",
          "[daemon][stall]") {
    test::require_root();
    const test::ScopedEnvironment early_eof("SPLICER_TEST_EARLY_EOF", "1");
    test::XmppPair pair = test::xmpp_pair("sockmap");
    const auto& daemon = pair.daemon;
    UniqueFd& client = pair.client;
    UniqueFd& backend = pair.backend;
    REQUIRE(::setsockopt(backend.get(), SOL_SOCKET, SO_SNDBUF, &kLatePassBackendSendBuffer,
                         sizeof(kLatePassBackendSendBuffer)) == 0);
    // The daemon's backend socket: bound to the port the backend sees as its peer.
    const std::uint16_t daemon_port = late_pass_port(backend.get(), true);

    // The client reads nothing yet: its socket's send buffer fills with redirected bytes, the
    // verdict then passes the backend's bytes up, and the copy waits for the client.
    test::set_nonblocking(backend.get());
    test::ByteGenerator generator(kLatePassSeed);
    std::string sent;
    std::uint64_t unread = 0;
    const auto setup_deadline = std::chrono::steady_clock::now() + kLatePassSetupDeadline;
    while (unread < kLatePassUnread && std::chrono::steady_clock::now() < setup_deadline) {
        const std::string chunk = generator.take(kLatePassChunk);
        std::size_t offset = 0;
        while (offset < chunk.size() && std::chrono::steady_clock::now() < setup_deadline) {
            const ssize_t n =
                ::send(backend.get(), chunk.data() + offset, chunk.size() - offset, MSG_NOSIGNAL);
            if (n > 0) {
                offset += static_cast<std::size_t>(n);
            } else {
                REQUIRE((errno == EAGAIN || errno == EWOULDBLOCK));
                std::this_thread::sleep_for(1ms);
            }
        }
        sent += chunk.substr(0, offset);
        // A look costs a process (ss): one per kLatePassChunksPerLook chunks, so the last
        // look sees at most that much more than the target.
        if (sent.size() % (kLatePassChunk * kLatePassChunksPerLook) == 0) {
            unread = late_pass_receive_queue(daemon_port, pair.listener.port).value_or(0);
        }
    }
    INFO(daemon->log_tail(10));
    INFO(test::daemon_stats(*daemon));
    INFO("backend sent " << sent.size() << ", passed and unread " << unread);
    REQUIRE(unread >= kLatePassUnread);
    // Every byte and the FIN into the daemon's socket, the FIN acknowledged: the passed
    // bytes are all there to read when the client starts.
    REQUIRE(::shutdown(backend.get(), SHUT_WR) == 0);
    while ((late_pass_unsent(backend.get()) > 0 ||
            late_pass_tcp_state(backend.get()) != TCP_FIN_WAIT2) &&
           std::chrono::steady_clock::now() < setup_deadline) {
        std::this_thread::sleep_for(5ms);
    }
    REQUIRE(late_pass_tcp_state(backend.get()) == TCP_FIN_WAIT2);

    test::ReadOptions reading;
    reading.max_time = kLatePassReadDeadline;
    const test::ReadReport read = test::read_stream(client.get(), reading);
    INFO("client read " << read.bytes << " of " << sent.size() << (read.eof ? " and EOF" : ""));
    CHECK(read.bytes == sent.size());
    CHECK(read.sha256 == test::sha256_hex(sent));
    CHECK(read.eof);
    // The hook did take a wake-up for the EOF (else this proves nothing). Log lines reach
    // the harness up to 20 ms after the event (the daemon's log writer batches them).
    const auto early = daemon->wait_for_log("test_early_eof");
    REQUIRE(early);
    CHECK(early->get("dir") == "backend_to_client");
    CHECK(daemon->logs("test_early_eof").size() == 1);
    client.reset();
    backend.reset();
    test::stop_daemon(*daemon);
}

// The shape that stalled under CPU load (issue 15, "nothing lost, nothing hangs"): both ends
// send 16 MiB at once and half-close while the other still sends, through a sockmap daemon
// with two workers. On a quiet machine the psock's backlog worker keeps up and no EOF is read
// early; under load (a few busy loops per CPU, or parallel compiles) about one run in eight
// stalled before the fix. Hidden: it proves something only on a loaded machine, which CI is
// not; run it in a loop while busy loops load every CPU, each run bounded, e.g.
//   for i in $(seq 20); do timeout 150 splicer_privileged_tests '[stall-load]'; done
TEST_CASE("sockmap under CPU load: 16 MiB each way at once, both half-closing, all arrive",
          "[.][stall-load]") {
    test::require_root();
    constexpr std::uint64_t kEachWay = 16ULL << 20;
    test::XmppPair pair = test::xmpp_pair("sockmap", 2);
    const auto& daemon = pair.daemon;
    UniqueFd& client = pair.client;
    UniqueFd& backend = pair.backend;

    test::TransferOptions from_client;
    from_client.send = test::Outgoing{"", kEachWay, 2301};
    from_client.timeout = 60s;
    test::TransferOptions from_backend = from_client;
    from_backend.send = test::Outgoing{"", kEachWay, 2302};
    test::TransferResult backend_side;
    std::thread backend_thread(
        [&] { backend_side = test::transfer_both_ways(backend.get(), from_backend); });
    const test::TransferResult client_side = test::transfer_both_ways(client.get(), from_client);
    backend_thread.join();
    INFO("client: " << test::describe_stream(client_side));
    INFO("backend: " << test::describe_stream(backend_side));
    INFO(daemon->log_tail(10));
    INFO(test::daemon_stats(*daemon));
    CHECK(client_side.complete(from_client));
    CHECK(backend_side.complete(from_backend));
    CHECK(backend_side.received_sha256 == client_side.sent_sha256);
    CHECK(client_side.received_sha256 == backend_side.sent_sha256);
    client.reset();
    backend.reset();
    test::stop_daemon(*daemon);
}
