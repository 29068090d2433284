#include "support/sockets.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace splicer::test {
namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error(what + ": " + std::strerror(errno));
}

std::string address_text(const sockaddr_storage& address) {
    char text[INET6_ADDRSTRLEN] = {};
    if (address.ss_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address);
        ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
        return "[" + std::string(text) + "]:" + std::to_string(ntohs(in6->sin6_port));
    }
    const auto* in4 = reinterpret_cast<const sockaddr_in*>(&address);
    ::inet_ntop(AF_INET, &in4->sin_addr, text, sizeof(text));
    return std::string(text) + ":" + std::to_string(ntohs(in4->sin_port));
}

// getsockname() / getpeername() into a SocketAddress; false on failure.
bool socket_name(int fd, bool peer, SocketAddress& address) {
    address.length = sizeof(address.storage);
    return (peer ? ::getpeername(fd, address.get(), &address.length)
                 : ::getsockname(fd, address.get(), &address.length)) == 0;
}

}  // namespace

std::uint16_t SocketAddress::port() const {
    return ntohs(storage.ss_family == AF_INET6
                     ? reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port
                     : reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
}

SocketAddress loopback_address(std::uint16_t port, bool ipv6) {
    SocketAddress address;
    if (ipv6) {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        in6->sin6_port = htons(port);
        address.length = sizeof(sockaddr_in6);
    } else {
        auto* in4 = reinterpret_cast<sockaddr_in*>(&address.storage);
        in4->sin_family = AF_INET;
        in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in4->sin_port = htons(port);
        address.length = sizeof(sockaddr_in);
    }
    return address;
}

std::string loopback_text(std::uint16_t port, bool ipv6) {
    return (ipv6 ? std::string("[::1]:") : std::string("127.0.0.1:")) + std::to_string(port);
}

Listener bind_loopback(std::uint16_t port, bool ipv6) {
    Listener bound;
    bound.fd = UniqueFd(::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!bound.fd) {
        return bound;
    }
    if (ipv6) {
        const int only = 1;
        ::setsockopt(bound.fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &only, sizeof(only));
    }
    SocketAddress address = loopback_address(port, ipv6);
    if (::bind(bound.fd.get(), address.get(), address.length) != 0 ||
        !socket_name(bound.fd.get(), false, address)) {
        const int saved = errno;
        bound.fd.reset();
        errno = saved;
        return bound;
    }
    bound.port = address.port();
    return bound;
}

Listener listen_loopback(bool ipv6, int backlog) {
    Listener listener = bind_loopback(0, ipv6);
    if (!listener.fd) {
        fail("socket/bind");
    }
    if (::listen(listener.fd.get(), backlog) != 0) {
        fail("listen");
    }
    return listener;
}

Listener listen_on(const std::string& ip, std::uint16_t port, int backlog) {
    Listener listener;
    listener.fd = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!listener.fd) {
        fail("socket");
    }
    SocketAddress address;
    auto* in4 = reinterpret_cast<sockaddr_in*>(&address.storage);
    in4->sin_family = AF_INET;
    in4->sin_port = htons(port);
    if (::inet_pton(AF_INET, ip.c_str(), &in4->sin_addr) != 1) {
        throw std::runtime_error("not an IPv4 address: " + ip);
    }
    address.length = sizeof(sockaddr_in);
    if (::bind(listener.fd.get(), address.get(), address.length) != 0) {
        fail("bind to " + ip + ":" + std::to_string(port));
    }
    if (::listen(listener.fd.get(), backlog) != 0 ||
        !socket_name(listener.fd.get(), false, address)) {
        fail("listen on " + ip);
    }
    listener.port = address.port();
    return listener;
}

UniqueFd connect_loopback(std::uint16_t port, bool ipv6) {
    UniqueFd fd(::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        fail("socket");
    }
    const SocketAddress address = loopback_address(port, ipv6);
    if (::connect(fd.get(), address.get(), address.length) != 0) {
        fail("connect");
    }
    return fd;
}

UniqueFd connect_to(std::uint16_t port, bool ipv6, std::chrono::milliseconds timeout) {
    UniqueFd fd(::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
        fail("socket");
    }
    const SocketAddress address = loopback_address(port, ipv6);
    if (::connect(fd.get(), address.get(), address.length) != 0 && errno != EINPROGRESS) {
        fail("connect to port " + std::to_string(port));
    }
    pollfd waiting{fd.get(), POLLOUT, 0};
    if (::poll(&waiting, 1, static_cast<int>(timeout.count())) <= 0) {
        throw std::runtime_error("connect to port " + std::to_string(port) + ": timed out");
    }
    int error = 0;
    socklen_t error_length = sizeof(error);
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &error_length);
    if (error != 0) {
        throw std::runtime_error("connect to port " + std::to_string(port) + ": " +
                                 std::strerror(error));
    }
    set_nonblocking(fd.get(), false);
    return fd;
}

UniqueFd socket_bound_to(const std::string& source, bool nonblocking) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0),
                         0));
    if (!fd) {
        fail("socket");
    }
    sockaddr_in local{};
    local.sin_family = AF_INET;
    if (::inet_pton(AF_INET, source.c_str(), &local.sin_addr) != 1) {
        throw std::runtime_error("not an IPv4 address: " + source);
    }
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&local), sizeof(local)) != 0) {
        fail("bind to " + source);
    }
    return fd;
}

UniqueFd connect_from(const std::string& source, std::uint16_t port) {
    UniqueFd fd = socket_bound_to(source);
    const SocketAddress remote = loopback_address(port);
    if (::connect(fd.get(), remote.get(), remote.length) != 0) {
        fail("connect from " + source + " to port " + std::to_string(port));
    }
    return fd;
}

UniqueFd accept_one(const Listener& listener) {
    UniqueFd fd(::accept4(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) {
        fail("accept");
    }
    return fd;
}

std::pair<UniqueFd, UniqueFd> tcp_pair() {
    Listener listener = listen_loopback();
    UniqueFd client = connect_loopback(listener.port);
    UniqueFd server = accept_one(listener);
    return {std::move(client), std::move(server)};
}

std::string local_address(int fd) {
    SocketAddress address;
    return socket_name(fd, false, address) ? address_text(address.storage) : "?";
}

std::string peer_address(int fd) {
    SocketAddress address;
    return socket_name(fd, true, address) ? address_text(address.storage) : "?";
}

std::uint16_t local_port(int fd) {
    SocketAddress address;
    return socket_name(fd, false, address) ? address.port() : 0;
}

void set_nonblocking(int fd, bool nonblocking) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0) {
        throw std::runtime_error(std::string("fcntl F_GETFL: ") + std::strerror(errno));
    }
    const int wanted = nonblocking ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    if (wanted != flags && ::fcntl(fd, F_SETFL, wanted) != 0) {
        throw std::runtime_error(std::string("fcntl F_SETFL: ") + std::strerror(errno));
    }
}

void close_with_reset(UniqueFd fd) {
    const linger abort_on_close{1, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof(abort_on_close));
    fd.reset();
}

bool closed_by_peer(const UniqueFd& socket, std::chrono::milliseconds within) {
    pollfd waiting{.fd = socket.get(), .events = POLLIN, .revents = 0};
    if (::poll(&waiting, 1, static_cast<int>(within.count())) <= 0) {
        return false;
    }
    char byte = 0;
    const ssize_t got = ::recv(socket.get(), &byte, 1, MSG_DONTWAIT);
    return got == 0 || (got < 0 && errno == ECONNRESET);
}

void write_all(int fd, const void* data, std::size_t size) {
    const auto* bytes = static_cast<const char*>(data);
    while (size > 0) {
        const ssize_t n = ::send(fd, bytes, size, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            fail("send");
        }
        bytes += n;
        size -= static_cast<std::size_t>(n);
    }
}

void write_all(int fd, const std::string& data) {
    write_all(fd, data.data(), data.size());
}

std::string read_exactly(int fd, std::size_t size, int timeout_ms) {
    std::string data;
    data.resize(size);
    std::size_t got = 0;
    while (got < size) {
        pollfd waiting{fd, POLLIN, 0};
        const int ready = ::poll(&waiting, 1, timeout_ms);
        if (ready <= 0) {
            break;
        }
        const ssize_t n = ::recv(fd, data.data() + got, size - got, 0);
        if (n <= 0) {
            break;
        }
        got += static_cast<std::size_t>(n);
    }
    data.resize(got);
    return data;
}

}  // namespace splicer::test
