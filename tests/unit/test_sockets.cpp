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
