#include "support/raw_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "support/streams.h"

namespace splicer::test {

std::string xmpp_stream_header(const std::string& to) {
    return "<?xml version='1.0'?><stream:stream to='" + to +
           "' version='1.0' xml:lang='en' xmlns='jabber:client' "
           "xmlns:stream='http://etherx.jabber.org/streams'>";
}

UniqueFd connect_to(std::uint16_t port, bool ipv6, std::chrono::milliseconds timeout) {
    UniqueFd fd(::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
        throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    }
    sockaddr_storage address{};
    socklen_t length = 0;
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
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), length) != 0 &&
        errno != EINPROGRESS) {
        throw std::runtime_error("connect to port " + std::to_string(port) + ": " +
                                 std::strerror(errno));
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

UniqueFd connect_and_send(std::uint16_t port, const std::string& first, const std::string& then,
                          bool ipv6) {
    UniqueFd fd = connect_to(port, ipv6);
    const std::string all = first + then;
    std::size_t sent = 0;
    while (sent < all.size()) {
        const ssize_t n = ::send(fd.get(), all.data() + sent, all.size() - sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw std::runtime_error(std::string("send: ") + std::strerror(errno));
        }
        sent += static_cast<std::size_t>(n);
    }
    return fd;
}

UniqueFd send_client_hello(std::uint16_t port, const HelloOptions& hello,
                           const std::string& pipelined, bool ipv6, std::string* sent_hello) {
    const std::string bytes = make_client_hello(hello);
    if (sent_hello != nullptr) {
        *sent_hello = bytes;
    }
    return connect_and_send(port, bytes, pipelined, ipv6);
}

std::string local_address(int fd) {
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        return "?";
    }
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

std::uint16_t local_port(int fd) {
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        return 0;
    }
    return ntohs(address.ss_family == AF_INET6
                     ? reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port
                     : reinterpret_cast<const sockaddr_in*>(&address)->sin_port);
}

bool log_line_is_client(const LogLine& line, std::uint16_t client_port) {
    const std::string_view client = line.get("client");
    const std::string suffix = ":" + std::to_string(client_port);
    return client.size() > suffix.size() && client.substr(client.size() - suffix.size()) == suffix;
}

std::string wait_for_close(int fd, std::chrono::milliseconds timeout, std::uint64_t* received) {
    const auto deadline = Clock::now() + timeout;
    char buffer[65536];
    while (Clock::now() < deadline) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        pollfd waiting{fd, POLLIN, 0};
        const int ready =
            ::poll(&waiting, 1, static_cast<int>(std::max<std::int64_t>(1, left.count())));
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready <= 0) {
            break;
        }
        const ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
        if (n == 0) {
            return "eof";
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                continue;
            }
            return errno == ECONNRESET ? "reset" : std::string("error: ") + std::strerror(errno);
        }
        if (received != nullptr) {
            *received += static_cast<std::uint64_t>(n);
        }
    }
    return "open";
}

}  // namespace splicer::test
