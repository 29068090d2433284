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
#include <vector>

#include "daemon/connection_handler.h"
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

// The Flow part (slot, generation, id, both sockets, the plane's state) is what a data plane
// is handed; the rest is the daemon's.
//
// Every connection, idle or not, pays for its record (daemon/slab.h), so the members are
// grouped by size, the one-byte ones first and the 8-byte-aligned ones after, rather than in
// the order a connection's life fills them: scattered, the small ones cost 48 bytes of
// padding per record.
struct Connection : plane::Flow {
    // ---- one byte each
    bool in_use = false;
    State state = State::probing;
    bool awaiting_proxy_header = false;
    bool counted_probing = false;  // still counted by limits::Admission as probing
    // probing: the timeout and the poll for more bytes are armed; SO_PEEK_OFF is set (a peek
    // returns only new bytes)
    bool probe_timeout_armed = false;
    bool probe_poll_armed = false;
    bool peek_offset = false;
    // The rule's PROXY protocol version (0: none), taken when routed, as proxy_alpn below.
    std::uint8_t proxy_protocol = 0;
    // Transparent mode (net/transparent_bind.h): the backend socket leaves from
    // client_address. Taken when routed, like proxy_protocol.
    bool transparent = false;
    // handler_epoch counts the handlers installed (see `handler` below); its parity rides in
    // their tags (uring::Tag::of_handler), so a completion for the handler replaced (port 80
    // after a 101) never reaches the next one.
    std::uint8_t handler_epoch = 0;

    // ---- four bytes each
    int receive_low_water = 1;
    // how much probing cost: peeks made (on the routed line; the bytes are probe_peek_bytes)
    std::uint32_t probe_peeks = 0;
    // polls armed for more bytes; the first also armed the probe timeout (a decision on the
    // bytes queued at the accept needs neither: EventLoop::start_probing)
    std::uint32_t probe_waits = 0;
    std::uint32_t series = 0;  // metrics::RuleSeriesTable index of the rule or http route
    int outstanding = 0;       // io_uring operations in flight that name this connection

    // ---- eight-byte aligned
    std::chrono::steady_clock::time_point accepted_at{};
    std::size_t listener = 0;
    std::size_t probe_needed = 0;  // the router's Decision::needed: wake once this many are queued
    std::uint64_t probe_peek_bytes = 0;  // bytes the probe's peeks copied
    // routing result, for the connect and the logs
    std::optional<std::size_t> rule;
    // What serves it once routed: its data plane or its HTTP exchange (connection_handler.h).
    // Empty while probing and connecting.
    std::unique_ptr<ConnectionHandler> handler;
    // probing: bytes peeked so far (still queued on the client socket)
    std::vector<std::byte> peeked;
    __kernel_timespec probe_timeout{};    // read by the kernel when the timeout is submitted
    __kernel_timespec connect_timeout{};  // likewise
    // 16 bytes each (memory/compact_string.h), inline up to 15: the client's key
    // (net::host_key(client_address), for per-client limits), the rule's name, SNI, ALPN.
    memory::CompactString client_key;
    memory::CompactString protocol;
    memory::CompactString sni;
    memory::CompactString alpn;
    // Empty on nearly every connection, so out of line (memory/rare_string.h): the ALPN a v2
    // PROXY header carries, taken when routed (a reload while connecting must not change what
    // this connection sends), and why it ended ("done", "client_reset", ...), set only as it
    // closes, for the close log.
    memory::RareString proxy_alpn;
    memory::RareString end;

    // ---- addresses (32 bytes, 4-byte aligned)
    // The client: the peer, or on a `proxyprotocol: true` listener the source its PROXY
    // header named (a LOCAL or UNKNOWN header: the peer).
    net::SocketAddress client_address;
    net::SocketAddress peer_address;  // the socket's own peer (the balancer, `via=`)
    // What the PROXY header said the client reached (length 0: none; getsockname tells).
    net::SocketAddress reached_address;
    net::SocketAddress backend_address;
};
// Every connection, idle or not, pays for its record (daemon/slab.h): 1,120 bytes while the
// plane's state was part of it, 552 since it is made only for a plane (plane/flow.h), 392
// with its members grouped by size, its two rarely set strings out of line and its short
// ones compact. On LP64, where the idle-memory figures are measured.
static_assert(sizeof(void*) != 8 || sizeof(Connection) <= 392,
              "the connection record grew: does the new member belong in a handler?");

}  // namespace splicer::daemon
