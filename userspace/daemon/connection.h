#pragma once
// One client connection through its life: accepted -> probing -> connecting -> spliced ->
// closing, or on port 80 accepted -> proxying (-> spliced after a 101) -> closing. The record
// owns both sockets until its teardown runs; the data plane keeps its per-direction state in
// `directions`.

#include <linux/time_types.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "net/address.h"
#include "plane/drain_watch.h"
#include "splicer/flow_accounting.h"
#include "splicer/unique_fd.h"

namespace splicer::daemon {

enum class State { probing, connecting, spliced, proxying, closing };

// Port 80: the HTTP exchange of a proxying connection (daemon/http_exchange.h).
class HttpExchange;
struct HttpExchangeDeleter {
    void operator()(HttpExchange* exchange) const;
};

// Bytes flowing one way: direction 0 client -> backend, direction 1 backend -> client.
inline constexpr std::size_t kClientToBackend = 0;
inline constexpr std::size_t kBackendToClient = 1;

struct Direction {
    std::uint64_t bytes = 0;  // delivered to the sink (for logs)
    bool source_eof = false;  // the source sent its FIN and every byte before it was read
    bool sink_shut = false;   // shutdown(sink, SHUT_WR) done: this direction is finished

    // copy plane (and the sockmap plane's copy of passed bytes): one buffer in flight
    std::unique_ptr<std::byte[]> buffer;
    std::size_t buffer_size = 0;  // sockmap plane: its size varies (sockmap_plane.cpp)
    std::size_t filled = 0;
    std::size_t sent = 0;

    // splice plane: the pipe between source and sink, and how much it holds
    UniqueFd pipe_read;
    UniqueFd pipe_write;
    std::size_t in_pipe = 0;

    // sockmap plane: passed bytes (flow control) copied by userspace, through `buffer`
    std::uint64_t copied = 0;  // in all, as reported to the verdict (set_copied)
    std::size_t taken = 0;     // passed bytes read into `buffer` (`filled` + urgent byte left out)
    std::uint64_t urgent_removed = 0;  // of `copied`, urgent bytes left out (never written)
    std::uint64_t redirected_before_copy = 0;  // redirects that must land before `buffer`
    bool copying = false;     // a copy round is under way (buffer filled or being sent)
    bool sending = false;     // a send of `buffer` is in flight
    bool poll_armed = false;
    bool poll_deferred = false;  // re-arm the poll on the next timer (spurious wake-up)
    std::uint64_t last_absorbed = 0;  // EOF propagation: progress of the sink
    // the watch's look for passed bytes a missed wake-up left (plane/sockmap_steps.h, owed_step)
    bool owed_idle = false;              // the last look: bytes owed, no copy under way
    std::uint64_t owed_idle_copied = 0;  // `copied` at that look
    std::chrono::steady_clock::time_point last_progress{};

    // splice and copy planes: payload the source had consumed when the plane started, to
    // count the urgent bytes recv() skipped (plane/urgent_data.h)
    std::uint64_t consumed_at_start = 0;
    bool consumed_known = false;
    // every plane: does the sink's reader take the bytes waiting for it (plane/sink_watch.h)
    plane::DrainWatch drain;
    bool source_braked = false;  // the source's receive buffer was locked small (brake_source)
    bool braked_by_watch = false;  // ... by the watch, for a reader that stopped (sink_watch.h)
};

struct Connection {
    std::uint32_t slot = 0;
    std::uint16_t generation = 0;
    bool in_use = false;
    State state = State::probing;
    std::uint64_t id = 0;  // for logs; never reused
    std::chrono::steady_clock::time_point accepted_at{};

    UniqueFd client;
    UniqueFd backend;
    // The client: the peer, or on a `proxyprotocol: true` listener the source its PROXY
    // header named (a LOCAL or UNKNOWN header: the peer).
    net::SocketAddress client_address;
    net::SocketAddress peer_address;  // the socket's own peer (the balancer, `via=`)
    // What the PROXY header said the client reached (length 0: none; getsockname tells).
    net::SocketAddress reached_address;
    bool awaiting_proxy_header = false;
    std::size_t listener = 0;
    std::string client_key;        // net::host_key(client_address), for per-client limits
    bool counted_probing = false;  // still counted by limits::Admission as probing

    // probing: bytes peeked so far (still queued on the client socket)
    std::vector<std::byte> peeked;
    __kernel_timespec probe_timeout{};  // read by the kernel when the timeout is submitted
    bool probe_timeout_armed = false;
    bool probe_poll_armed = false;
    int receive_low_water = 1;
    std::size_t probe_needed = 0;  // the router's Decision::needed: wake once this many are queued
    bool peek_offset = false;      // SO_PEEK_OFF is set: a peek returns only new bytes
    // how much probing cost: peeks made and bytes they copied (on the routed line)
    std::uint32_t probe_peeks = 0;
    std::uint64_t probe_peek_bytes = 0;

    // routing result, for the connect and the logs
    std::optional<std::size_t> rule;
    std::uint32_t series = 0;  // metrics::RuleSeriesTable index of the rule or http route
    std::string protocol;
    std::string sni;
    std::string alpn;
    net::SocketAddress backend_address;
    __kernel_timespec connect_timeout{};
    // The rule's PROXY protocol version (0: none) and the ALPN its v2 header carries, taken
    // when routed: a reload while connecting must not change what this connection sends.
    std::uint8_t proxy_protocol = 0;
    std::string proxy_alpn;
    // Transparent mode (net/transparent_bind.h): the backend socket leaves from
    // client_address. Taken when routed, like proxy_protocol.
    bool transparent = false;

    std::array<Direction, 2> directions;
    // sockmap plane: socket cookies and flow-accounting baselines, indexed like directions
    // (index 0 the client socket, the source of direction 0; index 1 the backend socket)
    std::array<std::uint64_t, 2> cookies{};
    std::array<plane::SocketBaseline, 2> baselines{};
    bool plane_started = false;   // DataPlane::start ran for this connection
    bool plane_fallback = false;  // sockmap refused this pair: the copy plane serves it
    bool plane_timer_armed = false;
    __kernel_timespec plane_timer{};
    bool watch_armed = false;  // Op::plane_watch pending (plane/sink_watch.h)
    __kernel_timespec watch_timer{};

    // port 80 only: the request/response state while proxying
    std::unique_ptr<HttpExchange, HttpExchangeDeleter> http;

    int outstanding = 0;  // io_uring operations in flight that name this connection
    std::string end;      // why it ended ("done", "client_reset", ...), for the close log

    [[nodiscard]] int source_fd(std::size_t direction) const {
        return direction == kClientToBackend ? client.get() : backend.get();
    }
    [[nodiscard]] int sink_fd(std::size_t direction) const {
        return direction == kClientToBackend ? backend.get() : client.get();
    }
};

}  // namespace splicer::daemon
