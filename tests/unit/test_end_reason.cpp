// The `end=` spelling every plane uses when a call on a pair's socket fails
// (plane/end_reason.h): a peer's RST names the peer, anything else the call and errno name;
// and a read of 0 told apart as the peer's FIN or a reset another call reported.

#include <poll.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>
#include <utility>

#include "daemon/connection.h"
#include "plane/end_reason.h"
#include "support/sockets.h"

using splicer::daemon::kBackendToClient;
using splicer::daemon::kClientToBackend;

TEST_CASE("end reason: a reset names the peer, other errors the call and the errno name",
          "[end_reason]") {
    const auto [call, error, socket, expected] =
        GENERATE(table<const char*, int, std::size_t, std::string>({
            {"recv", ECONNRESET, kClientToBackend, "client_reset"},
            {"recv", ECONNRESET, kBackendToClient, "backend_reset"},
            {"send", EPIPE, kBackendToClient, "backend_reset"},
            {"splice", EPIPE, kClientToBackend, "client_reset"},
            {"recv", ETIMEDOUT, kClientToBackend, "recv_error:ETIMEDOUT"},
            {"send", ENOBUFS, kBackendToClient, "send_error:ENOBUFS"},
            {"splice", EIO, kClientToBackend, "splice_error:EIO"},
            {"send", 0, kClientToBackend, "send_error:0"},        // send() that wrote nothing
            {"recv", 4095, kClientToBackend, "recv_error:4095"},  // no name for it: the number
        }));
    CAPTURE(call, error, socket);
    CHECK(splicer::plane::failed_call(call, error, socket) == expected);
}

namespace {

// Waits until the peer's FIN or RST reached `fd` (poll reports the shut receive side).
void wait_for_peer_end(int fd) {
    pollfd waiting{.fd = fd, .events = POLLRDHUP, .revents = 0};
    REQUIRE(::poll(&waiting, 1, 5000) == 1);
}

ssize_t read_one(int fd) {
    char byte = 0;
    return ::recv(fd, &byte, 1, MSG_DONTWAIT);
}

}  // namespace

// CI (session 29): a client reset mid-transfer on the copy plane reached the backend as a
// FIN. The io_uring send toward the client took the RST's error, and the plane's own recv
// from the client then read 0, as after a FIN. Real loopback sockets, the same calls.
TEST_CASE("end reason: a read of 0 after a send took the peer's reset is told from a FIN",
          "[end_reason]") {
    SECTION("the peer reset and a send took the error: a reset") {
        auto [ours, peer] = splicer::test::tcp_pair();
        splicer::test::close_with_reset(std::move(peer));
        wait_for_peer_end(ours.get());
        const char byte = 'x';
        errno = 0;
        CHECK(::send(ours.get(), &byte, 1, MSG_NOSIGNAL) < 0);
        CHECK(errno == ECONNRESET);
        REQUIRE(read_one(ours.get()) == 0);  // the error was reported once, to the send
        CHECK(splicer::plane::ended_by_reset(ours.get(), false));
    }
    SECTION("the peer's FIN: no reset, our side may still write") {
        auto [ours, peer] = splicer::test::tcp_pair();
        REQUIRE(::shutdown(peer.get(), SHUT_WR) == 0);
        wait_for_peer_end(ours.get());
        REQUIRE(read_one(ours.get()) == 0);
        CHECK_FALSE(splicer::plane::ended_by_reset(ours.get(), false));
    }
    SECTION("both sides closed in turn: the socket ends in CLOSE without a reset") {
        auto [ours, peer] = splicer::test::tcp_pair();
        REQUIRE(::shutdown(ours.get(), SHUT_WR) == 0);
        REQUIRE(read_one(peer.get()) == 0);
        REQUIRE(::shutdown(peer.get(), SHUT_WR) == 0);
        wait_for_peer_end(ours.get());
        REQUIRE(read_one(ours.get()) == 0);
        // The state alone would read as a reset (CLOSE, by tcp_time_wait): our own FIN
        // went first, so no send of ours can have taken an error.
        CHECK(splicer::plane::ended_by_reset(ours.get(), false));
        CHECK_FALSE(splicer::plane::ended_by_reset(ours.get(), true));
    }
}
