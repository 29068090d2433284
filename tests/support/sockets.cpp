#include "support/sockets.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace splicer::test {
namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error(what + ": " + std::strerror(errno));
}

sockaddr_storage loopback(std::uint16_t port, bool ipv6, socklen_t& length) {
    sockaddr_storage address{};
    if (ipv6) {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&address);
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        in6->sin6_port = htons(port);
        length = sizeof(sockaddr_in6);
    } else {
        auto* in4 = reinterpret_cast<sockaddr_in*>(&address);
        in4->sin_family = AF_INET;
        in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in4->sin_port = htons(port);
        length = sizeof(sockaddr_in);
    }
    return address;
}

}  // namespace

Listener listen_loopback(bool ipv6) {
    Listener listener;
    listener.fd = UniqueFd(::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!listener.fd) {
        fail("socket");
    }
    socklen_t length = 0;
    sockaddr_storage address = loopback(0, ipv6, length);
    if (::bind(listener.fd.get(), reinterpret_cast<sockaddr*>(&address), length) != 0 ||
        ::listen(listener.fd.get(), 1024) != 0) {
        fail("bind/listen");
    }
    if (::getsockname(listener.fd.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        fail("getsockname");
    }
    listener.port = ntohs(ipv6 ? reinterpret_cast<sockaddr_in6*>(&address)->sin6_port
                               : reinterpret_cast<sockaddr_in*>(&address)->sin_port);
    return listener;
}

UniqueFd connect_loopback(std::uint16_t port, bool ipv6) {
    UniqueFd fd(::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        fail("socket");
    }
    socklen_t length = 0;
    sockaddr_storage address = loopback(port, ipv6, length);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), length) != 0) {
        fail("connect");
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

void write_all(int fd, const std::string& data) { write_all(fd, data.data(), data.size()); }

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
