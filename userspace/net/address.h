#pragma once
// Socket addresses: resolving configured endpoints (once, at start-up) and printing peers.

#include <sys/socket.h>

#include <cstdint>
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

// Which bits of a client address name the client (max_connections_per_client): an IPv4
// address's first `ipv4` bits, an IPv6 address's first `ipv6` bits. One host on IPv6 gets a
// whole /64 (SLAAC, RFC 4291's interface identifiers), so keying by /128 would let it open
// max_connections_per_client connections from each of 2^64 addresses.
struct ClientPrefix {
    std::uint32_t ipv4 = 32;  // 1..32
    std::uint32_t ipv6 = 64;  // 1..128
};

// The client part of an address, as raw bytes, for counting connections per client: the
// port is left out, the address is cut to its prefix (bits past it zeroed), and an
// IPv4-mapped IPv6 address (::ffff:a.b.c.d) gives the same key as a.b.c.d (its IPv4 prefix).
std::string host_key(const SocketAddress& address, ClientPrefix prefix = {});

}  // namespace splicer::net
