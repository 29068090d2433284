#pragma once
// Writing the PROXY protocol header (net/proxy_header.h) to a backend: what it carries for a
// connection, and the one send that puts it on the wire. Called once the backend connect has
// completed and before the data plane starts, so the header precedes every client byte on
// every plane; on sockmap it is in the backend's send queue before the socket enters the
// sockhash, and the flow-accounting baseline taken there counts it as written before
// (flow_accounting.h, SocketBaseline::written).

#include <string>
#include <string_view>

#include "net/address.h"
#include "net/proxy_header.h"
#include "splicer/config.h"
#include "splicer/result.h"
#include "splicer/tls_client_hello.h"

namespace splicer::daemon {

// The ALPN v2 sends for a TLS client routed by `rule`. splicer does not terminate TLS, so
// the protocol the backend will negotiate is not known; what is known is the protocol the
// rule chose the backend for: the first protocol in the client's list that the rule's
// alpn_protocols allow (the router's condition). A rule without alpn_protocols: none sent.
// (HAProxy's send-proxy-v2 sends the ALPN its own TLS layer negotiated, none in TCP mode.)
std::string proxy_alpn(const tls::ClientHello& hello, const config::Rule& rule);

// The host name v2 sends as PP2_TYPE_AUTHORITY: the client's SNI as it sent it, or nothing
// when it sent none or a name longer than a DNS name can be (255 bytes, RFC 1035 2.3.4).
std::string_view proxy_authority(std::string_view sni);

// The header for a connection from `client` accepted on the socket `client_fd` (its local
// address, from getsockname, is the destination: the address the client connected to,
// which on a wildcard listener is the one that tells the backend which of the host's
// addresses was reached). Behind a balancer (`proxyprotocol: true` on the listener) the
// destination its header named is `reached` instead; length 0: none, getsockname tells.
Result<std::string> proxy_header_for(net::ProxyVersion version, const net::SocketAddress& client,
                                     int client_fd, const net::SocketAddress& reached,
                                     const net::ProxyTlvs& tlvs = {});

// Sends `header` on a freshly connected socket, without blocking. Its send buffer is empty
// and far larger than the longest header (kMaxProxyV2Bytes, 568 bytes), so the kernel takes
// it whole; anything else (a short write, EAGAIN, a reset) is an error: the caller ends the
// connection rather than let a client byte go first or a partial header go out.
Result<void> send_proxy_header(int backend_fd, std::string_view header);

}  // namespace splicer::daemon
