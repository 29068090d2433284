#pragma once
// Socket addresses: resolving configured endpoints (once, at start-up) and printing peers.

#include <sys/socket.h>

#include <string>

#include "splicer/config.h"
#include "splicer/result.h"

namespace splicer::net {

struct SocketAddress {
    sockaddr_storage storage{};
    socklen_t length = 0;

    [[nodiscard]] const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
    sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage); }
    [[nodiscard]] int family() const { return storage.ss_family; }
};

// A literal resolves without I/O; a name is looked up (getaddrinfo) and its first address
// kept. Called at start-up only, never on the hot path.
Result<SocketAddress> resolve(const config::Endpoint& endpoint);

// "127.0.0.1", "::1": the address alone (X-Forwarded-For).
std::string ip_to_string(const SocketAddress& address);

// "127.0.0.1:443", "[::1]:443".
std::string to_string(const SocketAddress& address);

// The host part alone, as raw bytes, for counting connections per client: the port is left
// out, and an IPv4-mapped IPv6 address (::ffff:a.b.c.d) gives the same key as a.b.c.d.
std::string host_key(const SocketAddress& address);

}  // namespace splicer::net
