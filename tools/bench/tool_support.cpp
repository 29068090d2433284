#include "tool_support.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "net/sockets.h"

namespace splicer::bench {

void die(const char* what) {
    std::fprintf(stderr, "%s\n", what);
    std::exit(2);
}

net::SocketAddress endpoint_from_args(const char* host, const char* port) {
    const auto number = number_from_arg(port, "port");
    if (number == 0 || number > 65535) {
        die("port: expected 1..65535");
    }
    auto resolved = net::resolve({host, static_cast<std::uint16_t>(number)});
    if (!resolved) {
        die(resolved.error().message.c_str());
    }
    return *resolved;
}

std::uint64_t number_from_arg(const char* text, const char* name) {
    const std::string_view view(text);
    std::uint64_t value = 0;
    const auto [end, error] = std::from_chars(view.data(), view.data() + view.size(), value);
    if (error != std::errc() || end != view.data() + view.size()) {
        std::fprintf(stderr, "%s: not a number: %s\n", name, text);
        std::exit(2);
    }
    return value;
}

std::chrono::milliseconds seconds_from_arg(const char* text, const char* name) {
    const std::string_view view(text);
    const auto point = view.find('.');
    const std::string whole(view.substr(0, point));
    std::uint64_t millis = whole.empty() ? 0 : number_from_arg(whole.c_str(), name) * 1000;
    if (point != std::string_view::npos) {
        const std::string_view fraction = view.substr(point + 1);
        if (fraction.empty() || fraction.size() > 3) {
            std::fprintf(stderr, "%s: expected SECONDS[.mmm]: %s\n", name, text);
            std::exit(2);
        }
        std::uint64_t scale = 100;
        for (const char digit : fraction) {
            if (digit < '0' || digit > '9') {
                std::fprintf(stderr, "%s: not a number: %s\n", name, text);
                std::exit(2);
            }
            millis += static_cast<std::uint64_t>(digit - '0') * scale;
            scale /= 10;
        }
    }
    return std::chrono::milliseconds(millis);
}

void raise_fd_limit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        (void)::setrlimit(RLIMIT_NOFILE, &limit);
    }
}

UniqueFd connect_within(const net::SocketAddress& address, int timeout_ms) {
    auto socket = net::stream_socket_for(address);
    if (!socket) {
        return {};
    }
    UniqueFd fd = std::move(*socket);
    if (::connect(fd.get(), address.get(), address.length) != 0 && errno != EINPROGRESS) {
        return {};
    }
    pollfd waiting{.fd = fd.get(), .events = POLLOUT};
    int error = 0;
    socklen_t length = sizeof(error);
    if (::poll(&waiting, 1, timeout_ms) != 1 ||
        ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) {
        return {};
    }
    // Blocking from here: each tool drives one socket at a time.
    ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
    return fd;
}

bool send_all(int fd, std::span<const std::byte> bytes) {
    while (!bytes.empty()) {
        const ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (sent <= 0) {
            if (sent < 0 && errno == EINTR) {
                continue;
            }
            return false;
        }
        bytes = bytes.subspan(static_cast<std::size_t>(sent));
    }
    return true;
}

bool receive_exactly(int fd, std::span<std::byte> bytes, int timeout_ms) {
    while (!bytes.empty()) {
        pollfd waiting{.fd = fd, .events = POLLIN};
        if (::poll(&waiting, 1, timeout_ms) != 1) {
            return false;
        }
        const ssize_t got = ::recv(fd, bytes.data(), bytes.size(), 0);
        if (got <= 0) {
            if (got < 0 && errno == EINTR) {
                continue;
            }
            return false;
        }
        bytes = bytes.subspan(static_cast<std::size_t>(got));
    }
    return true;
}

}  // namespace splicer::bench
