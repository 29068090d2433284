#pragma once
// Reading the PROXY protocol header a balancer sends before its client's bytes (HAProxy's
// doc/proxy-protocol.txt; sslh's `proxyprotocol: true` on a listen entry). Pure: bytes in,
// one of three answers out, no I/O. v1 and v2 are told apart by their first bytes, so a
// listener accepts both.
//
// What "local" means (HAProxy's semantics, src/connection.c conn_recv_proxy): a v1
// `PROXY UNKNOWN` line, a v2 LOCAL command (the balancer's own health checks), and a v2 PROXY
// command whose family or transport splicer cannot use as a TCP/IP client address (UNSPEC,
// AF_UNIX, DGRAM) carry no client: the header is consumed and the connection keeps its own
// addresses, as if it had come straight from the balancer.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "net/address.h"
#include "net/proxy_header.h"

namespace splicer::net {

// The longest v2 header accepted: the 16-byte fixed part and up to this many address and
// TLV bytes. The spec bounds it at 16 + 65535; balancers send far less (addresses plus a few
// TLVs: AWS and GCP add tens of bytes), and every byte is peeked before it is judged.
inline constexpr std::size_t kMaxReceivedProxyV2Payload = 2048;
inline constexpr std::size_t kMaxReceivedProxyBytes = 16 + kMaxReceivedProxyV2Payload;

enum class ProxyParseStatus : std::uint8_t { need_more, invalid, parsed };

struct ReceivedProxyHeader {
    ProxyVersion version = ProxyVersion::v1;
    bool local = true;                 // no client address in it (see above)
    SocketAddress source;              // the client, when !local
    SocketAddress destination;         // the address the client reached, when !local
    std::size_t length = 0;            // bytes to consume: the header and nothing else
};

struct ProxyParseResult {
    ProxyParseStatus status = ProxyParseStatus::need_more;
    // invalid: why, a static string for the log line. Bytes that cannot start a header at all
    // (anything but a prefix of "PROXY " or the v2 signature) say kNotProxyHeader.
    std::string_view reason;
    ReceivedProxyHeader header;  // parsed only
};

inline constexpr std::string_view kNotProxyHeader = "no PROXY header";

// Looks at the first bytes a connection sent. need_more: every byte so far may still start a
// valid header (a v1 line is judged at its CRLF or at 107 bytes, a v2 header once its
// announced length is there); the answer never changes as more bytes arrive after a header.
ProxyParseResult parse_proxy_header(std::span<const std::byte> bytes);

}  // namespace splicer::net
