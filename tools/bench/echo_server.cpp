// bench_echo_server HOST PORT: sends back every byte it receives, on any number of
// connections (one epoll loop). The backend of the ping-pong and idle-connection workloads;
// runs until killed.

#include <sys/epoll.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <unordered_map>
#include <vector>

#include "net/sockets.h"
#include "tool_support.h"

using splicer::UniqueFd;
namespace bench = splicer::bench;

namespace {

// Bytes read but not yet written back: the connection stops reading until they are gone,
// so a client that never reads cannot make the server buffer without bound.
struct Connection {
    UniqueFd fd;
    std::vector<std::byte> pending;
};

void watch(int epoll, int fd, std::uint32_t events, int operation) {
    epoll_event event{.events = events, .data = {.fd = fd}};
    ::epoll_ctl(epoll, operation, fd, &event);
}

enum class Flushed { all, blocked, failed };

// Writes what it can of `pending`. A failed send (the peer reset) must close the connection:
// waiting for EPOLLOUT again would spin, since a dead socket is always "writable".
Flushed flush(Connection& connection) {
    while (!connection.pending.empty()) {
        const ssize_t sent = ::send(connection.fd.get(), connection.pending.data(),
                                    connection.pending.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0 && (errno == EAGAIN || errno == EINTR)) {
            return Flushed::blocked;
        }
        if (sent <= 0) {
            return Flushed::failed;
        }
        connection.pending.erase(connection.pending.begin(), connection.pending.begin() + sent);
    }
    return Flushed::all;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        bench::die("usage: bench_echo_server HOST PORT");
    }
    bench::raise_fd_limit();
    auto listener = splicer::net::listen_on(bench::endpoint_from_args(argv[1], argv[2]), 4096);
    if (!listener) {
        bench::die(listener.error().message.c_str());
    }
    UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
    watch(epoll.get(), listener->get(), EPOLLIN, EPOLL_CTL_ADD);
    std::unordered_map<int, Connection> connections;
    std::array<epoll_event, 256> events{};
    std::array<std::byte, 65536> buffer{};
    for (;;) {
        const int ready = ::epoll_wait(epoll.get(), events.data(), events.size(), -1);
        for (int i = 0; i < ready; ++i) {
            const int fd = events[static_cast<std::size_t>(i)].data.fd;
            if (fd == listener->get()) {
                for (;;) {
                    UniqueFd accepted(::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
                    if (!accepted) {
                        break;
                    }
                    watch(epoll.get(), accepted.get(), EPOLLIN, EPOLL_CTL_ADD);
                    const int key = accepted.get();
                    connections[key] = Connection{std::move(accepted), {}};
                }
                continue;
            }
            Connection& connection = connections[fd];
            bool open = true;
            if (!connection.pending.empty()) {
                const Flushed flushed = flush(connection);
                open = flushed != Flushed::failed;
                if (flushed == Flushed::all) {
                    watch(epoll.get(), fd, EPOLLIN, EPOLL_CTL_MOD);
                }
            } else {
                const ssize_t got = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
                if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                    open = false;
                } else if (got > 0) {
                    connection.pending.assign(buffer.begin(), buffer.begin() + got);
                    const Flushed flushed = flush(connection);
                    open = flushed != Flushed::failed;
                    if (flushed == Flushed::blocked) {
                        watch(epoll.get(), fd, EPOLLOUT, EPOLL_CTL_MOD);
                    }
                }
            }
            if (!open) {
                connections.erase(fd);  // closing the fd also removes it from the epoll set
            }
        }
    }
}
