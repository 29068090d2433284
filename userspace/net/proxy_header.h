#pragma once
// The PROXY protocol header splicer writes to a backend before any client byte (HAProxy's
// doc/proxy-protocol.txt; sslh's `proxyprotocol: 1|2` on a `protocols` entry). Pure encoding,
// no I/O and no parsing: the backend connection's first bytes, built from the client's
// address (source) and the address it connected to (destination, the listener's side).
//
// Families: an IPv4 pair gives TCP4 / AF_INET. An IPv4-mapped IPv6 pair (::ffff:a.b.c.d on a
// dual-stack listener) is sent as TCP4 too: it is an IPv4 client, and splicer counts it as one
// everywhere else (net::host_key). HAProxy 3.x sends such a pair as TCP6 with the mapped
// addresses as its sockets report them (make_proxy_line_v1/v2 in src/connection.c); a
// backend that logs or rate-limits by address then sees "::ffff:a.b.c.d" for an IPv4 client.
// Any other pair with an IPv6 address is TCP6, an IPv4 address of it written mapped (as
// HAProxy does for a mixed pair).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "net/address.h"
#include "splicer/result.h"

namespace splicer::net {

enum class ProxyVersion : std::uint8_t { v1 = 1, v2 = 2 };

// v2 TLV types (proxy-protocol.txt, section 2.2).
inline constexpr std::uint8_t kPp2TypeAlpn = 0x01;
inline constexpr std::uint8_t kPp2TypeAuthority = 0x02;

// A TLV value splicer sends is at most this long: an ALPN protocol id is 1..255 bytes
// (RFC 7301, 3.1) and a host name at most 255 (RFC 1035, 2.3.4).
inline constexpr std::size_t kMaxProxyTlvValue = 255;

// The longest v1 line (the spec's 107 bytes, CRLF included) and v2 header splicer makes:
// 16-byte fixed part, 36 bytes of IPv6 addresses, two TLVs of 3 + 255 bytes.
inline constexpr std::size_t kMaxProxyV1Bytes = 107;
inline constexpr std::size_t kMaxProxyV2Bytes = 16 + 36 + 2 * (3 + kMaxProxyTlvValue);

// What v2 carries besides the addresses; empty: not sent. v1 has no TLVs: ignored there.
struct ProxyTlvs {
    std::string_view alpn;       // PP2_TYPE_ALPN: the application protocol
    std::string_view authority;  // PP2_TYPE_AUTHORITY: the host name the client asked for (SNI)
};

// The header's bytes. Fails when an address is not IPv4 or IPv6 (splicer listens on TCP/IP
// only, so the daemon never gets there) or a TLV value is longer than kMaxProxyTlvValue.
Result<std::string> encode_proxy_header(ProxyVersion version, const SocketAddress& source,
                                        const SocketAddress& destination,
                                        const ProxyTlvs& tlvs = {});

}  // namespace splicer::net
