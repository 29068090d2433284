// bench_stream_server HOST PORT: a fast source. On every connection, once the first bytes
// (the client's request) arrive, it writes a fixed pattern as fast as the connection takes
// it, until the peer goes away; whatever else the client sends is read and dropped. The
// backend of the slow-reader and never-reading workloads; runs until killed (one epoll loop).

#include <sys/epoll.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <span>
#include <unordered_map>

#include "net/sockets.h"
#include "tool_support.h"

using splicer::UniqueFd;
namespace bench = splicer::bench;

namespace {

void watch(int epoll, int fd, std::uint32_t events, int operation) {
    epoll_event event{.events = events, .data = {.fd = fd}};
    ::epoll_ctl(epoll, operation, fd, &event);
}

// Reads and drops what the client sent. False once it is gone (EOF or error).
bool drain(int fd, std::span<std::byte> buffer) {
    for (;;) {
        const ssize_t got = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
        if (got > 0) {
            continue;
        }
        return got < 0 && (errno == EAGAIN || errno == EINTR);
    }
}

// Writes the pattern until the socket is full. False once the peer is gone: a dead socket
// stays "writable", so it must be closed rather than watched again.
bool fill(int fd, std::span<const std::byte> pattern) {
    for (;;) {
        const ssize_t sent =
            ::send(fd, pattern.data(), pattern.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent > 0) {
            continue;
        }
        return sent < 0 && (errno == EAGAIN || errno == EINTR);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        bench::die("usage: bench_stream_server HOST PORT");
    }
    bench::raise_fd_limit();
    auto listener = splicer::net::listen_on(bench::endpoint_from_args(argv[1], argv[2]), 4096);
    if (!listener) {
        bench::die(listener.error().message.c_str());
    }
    UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
    watch(epoll.get(), listener->get(), EPOLLIN, EPOLL_CTL_ADD);
    std::unordered_map<int, UniqueFd> connections;
    std::array<epoll_event, 256> events{};
    std::array<std::byte, 65536> buffer{};
    std::array<std::byte, 65536> pattern{};
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        pattern[i] = static_cast<std::byte>('a' + i % 26);
    }
    for (;;) {
        const int ready = ::epoll_wait(epoll.get(), events.data(), events.size(), -1);
        for (int i = 0; i < ready; ++i) {
            const epoll_event& event = events[static_cast<std::size_t>(i)];
            const int fd = event.data.fd;
            if (fd == listener->get()) {
                for (;;) {
                    UniqueFd accepted(
                        ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
                    if (!accepted) {
                        break;
                    }
                    // Level-triggered: the first bytes start the stream, then both ways.
                    watch(epoll.get(), accepted.get(), EPOLLIN, EPOLL_CTL_ADD);
                    const int key = accepted.get();
                    connections[key] = std::move(accepted);
                }
                continue;
            }
            bool open = true;
            if ((event.events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
                open = drain(fd, buffer);
                if (open) {
                    watch(epoll.get(), fd, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
                }
            }
            if (open && (event.events & EPOLLOUT) != 0) {
                open = fill(fd, pattern);
            }
            if (!open) {
                connections.erase(fd);  // closing the fd also removes it from the epoll set
            }
        }
    }
}
