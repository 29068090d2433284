#pragma once
// Small blocking-socket helpers for tests on loopback (port 0, so tests never collide), and
// the address plumbing (sockaddr for 127.0.0.1 / ::1, "host:port" text) every helper shares.

#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "splicer/unique_fd.h"

namespace splicer::test {

// 127.0.0.1:port or [::1]:port as a sockaddr, with the length bind()/connect() want.
struct SocketAddress {
    sockaddr_storage storage{};
    socklen_t length = 0;
    [[nodiscard]] sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage); }
    [[nodiscard]] const sockaddr* get() const {
        return reinterpret_cast<const sockaddr*>(&storage);
    }
    [[nodiscard]] std::uint16_t port() const;
};
SocketAddress loopback_address(std::uint16_t port, bool ipv6 = false);
// "127.0.0.1:PORT" or "[::1]:PORT", as the daemon's config and openssl's -connect take it.
std::string loopback_text(std::uint16_t port, bool ipv6 = false);

// A listening TCP socket on 127.0.0.1 (or ::1) with a kernel-chosen port.
struct Listener {
    UniqueFd fd;
    std::uint16_t port = 0;
};
// Throws on failure.
Listener listen_loopback(bool ipv6 = false, int backlog = 1024);
// A listening IPv4 TCP socket on `ip`:`port` (port 0: kernel-chosen), made in the calling
// thread's network namespace (a backend on a namespace's own address). Throws on failure.
Listener listen_on(const std::string& ip, std::uint16_t port, int backlog = 1024);
// Binds (does not listen) to 127.0.0.1:port or [::1]:port (IPV6_V6ONLY), port 0 for any.
// Does not throw: on failure the fd is empty and the port 0 (errno says why).
Listener bind_loopback(std::uint16_t port, bool ipv6 = false);

// Blocking connect; throws on failure.
UniqueFd connect_loopback(std::uint16_t port, bool ipv6 = false);
// Connects with a timeout (so a peer that never answers the SYN fails the test instead of
// hanging it) and returns a blocking socket; throws on failure.
UniqueFd connect_to(std::uint16_t port, bool ipv6 = false,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
UniqueFd accept_one(const Listener& listener);
// An IPv4 TCP socket bound to `source` (e.g. "127.0.0.2": any 127/8 address is local) with a
// kernel-chosen port, not yet connected, so a test can speak as many client addresses.
// Throws on failure.
UniqueFd socket_bound_to(const std::string& source, bool nonblocking = false);
// Blocking connect from `source` (socket_bound_to) to 127.0.0.1:port; throws on failure.
UniqueFd connect_from(const std::string& source, std::uint16_t port);

// A connected pair over real TCP: {client end, server end}.
std::pair<UniqueFd, UniqueFd> tcp_pair();

// "127.0.0.1:51234" / "[::1]:51234" for the socket's local / remote end ("?" if unknown).
std::string local_address(int fd);
std::string peer_address(int fd);
std::uint16_t local_port(int fd);  // 0 if unknown

void set_nonblocking(int fd, bool nonblocking = true);
// SO_LINGER {1, 0} then close: the peer gets a RST instead of a FIN.
void close_with_reset(UniqueFd fd);
// True when the peer closed (FIN) or reset this socket within `within`; false when it is still
// open (a client the daemon holds, silent or probing, sees nothing) or data came instead.
bool closed_by_peer(const UniqueFd& socket, std::chrono::milliseconds within);

void write_all(int fd, const void* data, std::size_t size);
void write_all(int fd, const std::string& data);
// Reads exactly `size` bytes, or fewer if EOF or `timeout_ms` passes first.
std::string read_exactly(int fd, std::size_t size, int timeout_ms = 5000);

}  // namespace splicer::test
