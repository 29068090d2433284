#include "net/sockets.h"

#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace splicer::net {
Result<UniqueFd> listen_on(const SocketAddress& address, int backlog, bool shared) {
    UniqueFd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
        return errno_error("socket");
    }
    const int on = 1;
    // A restarted daemon rebinds at once, despite connections of the old one in TIME_WAIT.
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (shared && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) {
        return errno_error("SO_REUSEPORT");
    }
    if (address.family() == AF_INET6) {
        ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    }
    set_no_delay(fd.get());  // accepted sockets inherit it
    if (::bind(fd.get(), address.get(), address.length) != 0) {
        return errno_error("bind " + to_string(address));
    }
    if (::listen(fd.get(), backlog) != 0) {
        return errno_error("listen " + to_string(address));
    }
    return fd;
}

Result<UniqueFd> stream_socket_for(const SocketAddress& address) {
    UniqueFd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
        return errno_error("socket");
    }
    set_no_delay(fd.get());
    return fd;
}

SocketAddress local_address(int fd) {
    SocketAddress address;
    address.length = sizeof(address.storage);
    if (::getsockname(fd, address.get(), &address.length) != 0) {
        address = {};
    }
    return address;
}

SocketAddress peer_address(int fd) {
    SocketAddress address;
    address.length = sizeof(address.storage);
    if (::getpeername(fd, address.get(), &address.length) != 0) {
        address = {};
    }
    return address;
}

SocketAddress accepted_peer(const SocketAddress& written, int fd) {
    const bool whole = (written.family() == AF_INET && written.length == sizeof(sockaddr_in)) ||
                       (written.family() == AF_INET6 && written.length == sizeof(sockaddr_in6));
    return whole ? written : peer_address(fd);
}

std::size_t bytes_readable(int fd) {
    int queued = 0;
    if (::ioctl(fd, SIOCINQ, &queued) != 0 || queued < 0) {
        return 0;
    }
    return static_cast<std::size_t>(queued);
}

std::size_t bytes_unacknowledged(int fd) {
    int queued = 0;
    if (::ioctl(fd, SIOCOUTQ, &queued) != 0 || queued < 0) {
        return 0;
    }
    return static_cast<std::size_t>(queued);
}

std::optional<std::uint8_t> tcp_state(int fd) {
    tcp_info info{};
    socklen_t length = sizeof(info);
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) {
        return std::nullopt;
    }
    return info.tcpi_state;
}

void set_receive_low_water(int fd, int bytes) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof(bytes));
}

// With Nagle, a small write behind unacknowledged data waits for the peer's delayed ACK
// (40 ms on Linux): the benchmark measured a 40 ms median for new TLS connections through every
// plane (the client's Finished and its request relayed as two writes), and port 80 lost 45 ms
// per keep-alive request (head and body sent as two writes). HAProxy and nginx set it too.
void set_no_delay(int fd) {
    const int on = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

Result<void> set_nonblocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        return errno_error("O_NONBLOCK");
    }
    return {};
}

std::optional<AcceptedClient> accept_waiting(int listener) {
    const int flags = ::fcntl(listener, F_GETFL);
    if (flags < 0 || (flags & O_NONBLOCK) == 0) {
        return std::nullopt;
    }
    for (;;) {
        SocketAddress written;
        written.length = sizeof(written.storage);
        const int fd =
            ::accept4(listener, written.get(), &written.length, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            const SocketAddress peer = accepted_peer(written, fd);
            return AcceptedClient{.socket = UniqueFd(fd), .peer = peer};
        }
        // A client that reset while queued is gone from the queue with this error (each
        // one once, so the loop ends): the next may still wait.
        if (errno != EINTR && errno != ECONNABORTED) {
            return std::nullopt;
        }
    }
}

bool reset_connection(int fd) {
    sockaddr unspecified{};
    unspecified.sa_family = AF_UNSPEC;
    if (::connect(fd, &unspecified, sizeof(unspecified)) == 0) {
        // tcp_disconnect() sent the RST (or the peer's came first) and left the socket in
        // TCP_CLOSE, where close() sends nothing: no SO_LINGER needed (2 calls per aborted
        // pair fewer; tls_new's clients end every connection with a RST).
        return true;
    }
    // The disconnect did not take: SO_LINGER 0 makes the close send a RST rather than a FIN.
    const linger abortive{.l_onoff = 1, .l_linger = 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof(abortive));
    return false;
}

}  // namespace splicer::net
