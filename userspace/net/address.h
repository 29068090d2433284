#pragma once
// Socket addresses: resolving configured endpoints (once, at start-up) and printing peers.

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "splicer/config.h"
#include "splicer/result.h"

namespace splicer::net {

// Room for the addresses splicer deals in: IPv4 and IPv6 (TCP only; a PROXY header's
// AF_UNIX addresses are never kept, net/proxy_header_parse.h). sockaddr_storage would be 100
// bytes more in each of the four addresses every connection record holds
// (daemon/connection.h), for the whole life of every idle connection.
union SocketAddressStorage {
    sockaddr any;
    sockaddr_in v4;
    sockaddr_in6 v6;
};

struct SocketAddress {
    SocketAddressStorage storage{};  // zero-filled, all of it
    socklen_t length = 0;

    [[nodiscard]] const sockaddr* get() const { return &storage.any; }
    sockaddr* get() { return &storage.any; }
    [[nodiscard]] int family() const { return storage.any.sa_family; }
};
static_assert(sizeof(SocketAddress) == 32);

// A literal resolves without I/O; a name is looked up (getaddrinfo) and its first address
// kept. Called at start-up only, never on the hot path.
Result<SocketAddress> resolve(const config::Endpoint& endpoint);

// An address and port as raw parts (the handoff records carry a client so): the address in
// network order, 4 bytes (IPv4) or 16 (IPv6), the port in host order.
struct AddressParts {
    std::array<std::uint8_t, 16> bytes{};  // IPv4 in the first 4
    std::size_t size = 0;                  // 4, 16, or 0: neither family
    std::uint16_t port = 0;
};
AddressParts parts_of(const SocketAddress& address);
// The address made of `bytes` (4 or 16 of them) and `port`; nullopt for another length.
std::optional<SocketAddress> address_from(std::span<const std::uint8_t> bytes, std::uint16_t port);

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
