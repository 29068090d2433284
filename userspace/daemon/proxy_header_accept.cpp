// Accepting the PROXY protocol on a `proxyprotocol: true` listener: the balancer's header is
// read with the probe's machinery (peeked under SO_PEEK_OFF, woken by SO_RCVLOWAT, bounded by
// the probe timeout, on port 80 by header_timeout), parsed (net/proxy_header_parse.h), and
// then exactly its bytes are consumed with one recv, so every byte behind it (a ClientHello,
// an HTTP request, pipelined data) stays queued for the probe, the plane or port 80. Peeking
// stays linear: each wake-up copies only the new bytes, and the header is at most
// kMaxReceivedProxyBytes.

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "daemon/event_loop.h"
#include "net/proxy_header_parse.h"
#include "splicer/log.h"

namespace splicer::daemon {

namespace {

std::string_view reason_label(ProxyRejection reason) {
    switch (reason) {
        case ProxyRejection::missing:
            return "missing";
        case ProxyRejection::malformed:
            return "malformed";
        case ProxyRejection::untrusted:
            return "untrusted";
        case ProxyRejection::timeout:
            return "timeout";
    }
    return "?";
}

// Consumes exactly `length` queued bytes (already peeked, so they are there). False on a
// short read or an error: the stream position would be unknown, so the connection ends.
bool consume(int fd, std::size_t length) {
    std::vector<std::byte> sink(length);
    const ssize_t n = ::recv(fd, sink.data(), length, MSG_DONTWAIT);
    return n >= 0 && static_cast<std::size_t>(n) == length;
}

}  // namespace

bool EventLoop::proxy_peer_trusted(std::size_t listener, const net::SocketAddress& peer) const {
    const std::vector<config::Network>& trusted = listeners_[listener].trusted_proxies;
    if (trusted.empty()) {
        return true;
    }
    const std::uint8_t* bytes = nullptr;
    if (peer.family() == AF_INET) {
        bytes = reinterpret_cast<const std::uint8_t*>(
            &reinterpret_cast<const sockaddr_in*>(&peer.storage)->sin_addr);
    } else if (peer.family() == AF_INET6) {
        bytes = reinterpret_cast<const sockaddr_in6*>(&peer.storage)->sin6_addr.s6_addr;
    } else {
        return false;
    }
    return std::any_of(trusted.begin(), trusted.end(), [&](const config::Network& network) {
        return config::network_contains(network, peer.family(), bytes);
    });
}

void EventLoop::count_proxy_rejection(ProxyRejection reason, const net::SocketAddress& peer,
                                      std::string_view detail) {
    ++counters_.proxy_header_rejected[static_cast<std::size_t>(reason)];
    // One line per second whatever the flood (the refusals' gate for per-listener limits
    // would hide these; a gate of their own).
    if (auto rejected = proxy_rejection_log_.pass()) {
        log::warning("proxy_header_rejected", {{"reason", std::string(reason_label(reason))},
                                               {"detail", std::string(detail)},
                                               {"via", net::to_string(peer)},
                                               {"rejected", std::to_string(*rejected)}});
    }
}

EventLoop::HeaderStep EventLoop::read_proxy_header(Connection& connection, bool ended) {
    const net::ProxyParseResult result = net::parse_proxy_header(connection.routing->peeked);
    if (result.status == net::ProxyParseStatus::need_more) {
        if (!ended) {
            return HeaderStep::wait;
        }
        count_proxy_rejection(ProxyRejection::malformed, connection.peer_address(),
                              "the peer closed inside the PROXY header");
        close_connection(connection, "proxy_header_rejected");
        return HeaderStep::ended;
    }
    if (result.status == net::ProxyParseStatus::invalid) {
        count_proxy_rejection(result.reason == net::kNotProxyHeader ? ProxyRejection::missing
                                                                    : ProxyRejection::malformed,
                              connection.peer_address(), result.reason);
        close_connection(connection, "proxy_header_rejected");
        return HeaderStep::ended;
    }
    const net::ReceivedProxyHeader& header = result.header;
    if (!consume(connection.client.get(), header.length)) {
        close_connection(connection, "client_error");
        return HeaderStep::ended;
    }
    connection.awaiting_proxy_header = false;
    connection.routing->peeked.erase(
        connection.routing->peeked.begin(),
        connection.routing->peeked.begin() + static_cast<std::ptrdiff_t>(header.length));
    if (connection.routing->peek_offset) {
        // The peek offset counted the header's bytes: it now starts past what is still
        // peeked, whatever the kernel did with it on the recv.
        const int offset = static_cast<int>(connection.routing->peeked.size());
        ::setsockopt(connection.client.get(), SOL_SOCKET, SO_PEEK_OFF, &offset, sizeof(offset));
    }
    if (!header.local) {
        // HAProxy's semantics: LOCAL (health checks) and UNKNOWN keep the peer's addresses.
        connection.client_address = header.source;
        connection.proxied->reached = header.destination;
    }
    std::string key = net::host_key(connection.client_address, client_prefix_);
    if (const auto refusal = admission_.admit_client(key); refusal != limits::Refusal::none) {
        refuse(connection.listener, refusal);
        close_connection(connection, "refused");
        return HeaderStep::ended;
    }
    connection.client_key = std::move(key);
    log::info("proxy_header", {{"conn", std::to_string(connection.id)},
                               {"client", net::to_string(connection.client_address)},
                               {"via", net::to_string(connection.peer_address())},
                               {"version", header.version == net::ProxyVersion::v1 ? "1" : "2"},
                               {"local", header.local ? "yes" : "no"}});
    return HeaderStep::done;
}

}  // namespace splicer::daemon
