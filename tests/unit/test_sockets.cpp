// net/sockets: the socket options every connection the daemon handles starts with.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cerrno>

#include "net/sockets.h"
#include "support/net_address.h"
#include "support/sockets.h"

namespace {

int no_delay(int fd) {
    int value = -1;
    socklen_t length = sizeof(value);
    REQUIRE(::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &value, &length) == 0);
    return value;
}

}  // namespace

// Without TCP_NODELAY a relayed small write waits for the peer's delayed ACK (40 ms): the
// benchmark showed it as a 40 ms median for every new TLS connection through splicer.
TEST_CASE("client and backend sockets send without Nagle's delay", "[sockets]") {
    auto listener = splicer::net::listen_on(splicer::test::loopback_v4(0), 4);
    REQUIRE(listener.has_value());
    CHECK(no_delay(listener->get()) != 0);

    const splicer::net::SocketAddress bound = splicer::net::local_address(listener->get());
    auto backend = splicer::net::stream_socket_for(bound);
    REQUIRE(backend.has_value());
    CHECK(no_delay(backend->get()) != 0);

    // The accepted (client-side) socket inherits the option from the listener.
    const int connected = ::connect(backend->get(), bound.get(), bound.length);
    REQUIRE((connected == 0 || errno == EINPROGRESS));
    splicer::test::set_nonblocking(listener->get(), false);
    const splicer::UniqueFd accepted =
        splicer::test::accept_one({std::move(listener).value(), 0});
    CHECK(no_delay(accepted.get()) != 0);
}

// The event loop takes the client's address from the accept itself (no getpeername per
// connection): a whole IPv4 or IPv6 address is used as written, without asking the socket;
// anything else is asked of the socket.
TEST_CASE("an accepted client's address is the one the accept wrote, or the socket's own peer",
          "[sockets]") {
    using splicer::net::accepted_peer;
    using splicer::test::address_of;
    // fd -1: no socket to ask, so the answer can only come from what was written.
    for (const std::string ip : {"198.18.0.7", "2001:db8::7"}) {
        CAPTURE(ip);
        const splicer::net::SocketAddress written = address_of(ip, 40000);
        const splicer::net::SocketAddress taken = accepted_peer(written, -1);
        CHECK(splicer::net::to_string(taken) == splicer::net::to_string(written));
        CHECK(taken.length == written.length);
    }
    // Not a whole address (cut short, no family, or the length of the other family): the
    // socket's peer instead.
    auto [client, server] = splicer::test::tcp_pair();
    const splicer::net::SocketAddress real = splicer::net::peer_address(server.get());
    REQUIRE(real.family() == AF_INET);
    splicer::net::SocketAddress cut = address_of("198.18.0.7", 40000);
    cut.length = 8;
    splicer::net::SocketAddress empty;
    splicer::net::SocketAddress v4_as_v6_length = address_of("198.18.0.7", 40000);
    v4_as_v6_length.length = sizeof(sockaddr_in6);
    for (const splicer::net::SocketAddress& odd : {cut, empty, v4_as_v6_length}) {
        CHECK(splicer::net::to_string(accepted_peer(odd, server.get())) ==
              splicer::net::to_string(real));
    }
}
