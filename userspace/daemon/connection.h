#pragma once
// One client connection through its life: accepted -> probing -> connecting -> spliced ->
// closing, or on port 80 accepted -> proxying (-> spliced after a 101) -> closing. The record
// owns both sockets until its teardown runs; the data plane keeps its per-direction state in
// the plane::PlaneState its plane::Flow points at, made only when a plane serves it
// (plane/flow.h).

#include <linux/time_types.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "daemon/connection_handler.h"
#include "daemon/routing_state.h"
#include "memory/compact_string.h"
#include "memory/rare_string.h"
#include "net/address.h"
#include "plane/flow.h"
#include "splicer/unique_fd.h"
#include "uring/tag.h"

namespace splicer::daemon {

// One byte: it sits with the record's other small members (Connection's layout).
enum class State : std::uint8_t { probing, connecting, spliced, proxying, closing };

// The io_uring operations of a connection's own phases (uring::Owner::connection); its
// handler's are the handler's (plane/data_plane.h, daemon/http_exchange.h).
enum class ConnectionOp : std::uint8_t {
    probe_poll,       // client readable with more bytes than already peeked
    probe_timeout,    // the probe deadline
    connect,          // connect to the backend (linked to connect_timeout)
    connect_timeout,  // the linked timeout; its own completion carries nothing to act on
    cancel,           // an async cancel or timeout removal; nothing to act on
};
static_assert(uring::fits_in_tag(ConnectionOp::cancel));

// The directions of a pair, as the planes number them (plane/flow.h).
using plane::kBackendToClient;
using plane::kClientToBackend;

// On a `proxyprotocol: true` listener only, out of the record (Connection::proxied): the
// socket's own peer, when the client is the one a PROXY header named, and the address that
// header said the client reached. Everywhere else the peer is the client and nothing was
// reached through a header, so every other connection leaves 64 bytes out of its record.
struct ProxiedAddresses {
    net::SocketAddress peer;     // the socket's own peer (the balancer, `via=`)
    net::SocketAddress reached;  // length 0: none (getsockname tells)
};

// The Flow part (slot, generation, id, both sockets, the plane's state) is what a data plane
// is handed; the rest is the daemon's.
//
// Every connection, idle or not, pays for its record (daemon/slab.h), so the members are
// grouped by size, the one-byte ones first and the 8-byte-aligned ones after, rather than in
// the order a connection's life fills them: scattered, the small ones cost 48 bytes of
// padding per record. What only one phase needs lives out of the record: probing's and
// connecting's state (RoutingState), the plane's (plane::PlaneState), a PROXY header's
// addresses (ProxiedAddresses), the handler's own.
struct Connection : plane::Flow {
    // ---- one byte each
    bool in_use = false;
    State state = State::probing;
    bool awaiting_proxy_header = false;
    bool counted_probing = false;  // still counted by limits::Admission as probing
    // probing: the timeout and the poll for more bytes are armed (kept here, not in
    // `routing`: a close must remove the timeout whatever became of the probe's state)
    bool probe_timeout_armed = false;
    bool probe_poll_armed = false;
    // The rule's PROXY protocol version (0: none), taken when routed, as the routing state's
    // proxy_alpn.
    std::uint8_t proxy_protocol = 0;
    // Transparent mode (net/transparent_bind.h): the backend socket leaves from
    // client_address. Taken when routed, like proxy_protocol.
    bool transparent = false;
    // handler_epoch counts the handlers installed (see `handler` below); its parity rides in
    // their tags (uring::Tag::of_handler), so a completion for the handler replaced (port 80
    // after a 101) never reaches the next one.
    std::uint8_t handler_epoch = 0;

    // ---- four bytes each
    std::uint32_t series = 0;    // metrics::RuleSeriesTable index of the rule or http route
    int outstanding = 0;         // io_uring operations in flight that name this connection
    std::uint32_t listener = 0;  // index in the loop's listeners

    // ---- eight-byte aligned
    std::chrono::steady_clock::time_point accepted_at{};
    // routing result, for the connect and the logs
    std::optional<std::size_t> rule;
    // What serves it once routed: its data plane or its HTTP exchange (connection_handler.h).
    // Empty while probing and connecting.
    std::unique_ptr<ConnectionHandler> handler;
    // From the accept until routed (daemon/routing_state.h); null afterwards, and on port 80
    // without a PROXY header, which has no probing phase.
    std::unique_ptr<RoutingState> routing;
    // Null unless the listener takes PROXY headers (peer_address(), reached_address()).
    std::unique_ptr<ProxiedAddresses> proxied;
    // 16 bytes each (memory/compact_string.h), inline up to 15: the client's key
    // (net::host_key(client_address), for per-client limits), the rule's name.
    memory::CompactString client_key;
    memory::CompactString protocol;
    // Why it ended ("done", "client_reset", ...), set only as it closes, for the close log:
    // empty while it lives, so out of line (memory/rare_string.h).
    memory::RareString end;

    // ---- addresses (32 bytes, 4-byte aligned)
    // The client: the peer, or on a `proxyprotocol: true` listener the source its PROXY
    // header named (a LOCAL or UNKNOWN header: the peer).
    net::SocketAddress client_address;
    net::SocketAddress backend_address;

    // The socket's own peer: the client, or the balancer that sent a PROXY header.
    [[nodiscard]] const net::SocketAddress& peer_address() const {
        return proxied ? proxied->peer : client_address;
    }
    // What a PROXY header said the client reached (length 0: none; getsockname tells).
    [[nodiscard]] const net::SocketAddress& reached_address() const {
        static const net::SocketAddress none{};
        return proxied ? proxied->reached : none;
    }
};
// Every connection, idle or not, pays for its record (daemon/slab.h): 1,120 bytes while the
// plane's state was part of it, 552 since it is made only for a plane (plane/flow.h), 392
// with its members grouped by size, its two rarely set strings out of line and its short
// ones compact, 216 since probing's and connecting's state (daemon/routing_state.h) and a
// PROXY header's addresses left it. The slab's deque (libstdc++: nodes of 512 bytes, or of
// one record when it is larger) then holds two records per allocation instead of one: 216
// bytes per idle connection with the malloc header instead of 400. A record over 256 bytes
// goes back to one per node. On LP64, where the idle-memory figures are measured.
static_assert(sizeof(void*) != 8 || sizeof(Connection) <= 216,
              "the connection record grew: does the new member belong in a handler, or in "
              "RoutingState?");

}  // namespace splicer::daemon
