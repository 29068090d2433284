#pragma once
// The daemon's own address type (net::SocketAddress) from an IP literal and a port, for tests
// that feed addresses to the PROXY header writer and reader (tests/unit/test_proxy_header*),
// and the network byte order those headers' fields are written in.

#include <cstdint>
#include <string>

#include "net/address.h"

namespace splicer::test {

// "198.18.0.1" or "2001:db8::1" (a ':' makes it IPv6) with `port`; throws
// std::invalid_argument when `ip` is not a literal of that family.
net::SocketAddress address_of(const std::string& ip, std::uint16_t port);

// 127.0.0.1 with `port` (0: any), for the daemon's own listen and connect calls.
net::SocketAddress loopback_v4(std::uint16_t port);

// `value` as two bytes, most significant first (a PROXY v2 length or port, a TLV length).
std::string u16(std::uint16_t value);

}  // namespace splicer::test
