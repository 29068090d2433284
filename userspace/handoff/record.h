#pragma once
// One established connection as it moves from one event loop to another (another process
// after `splicer upgrade`, or another loop of this one in the tests): which plane served it,
// where its sockets (and the splice plane's pipes) sit in the SCM_RIGHTS array that travels
// with the records, and the state the plane needs to finish it. Plain data: handoff/wire.h
// turns a list of records into bytes and back, handoff/fd_check.h checks the fds against
// what the records claim. README.md (this folder) has the whole exchange.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace splicer::handoff {

// Bumped on any change of the wire layout; a receiver refuses every other version (an
// old binary handing over to a new one that reads a different layout must fail loudly and
// keep serving, not guess).
// Version 2: the client's address a PROXY header named (ClientAddress).
// Version 3: the client socket's peer address (ConnectionRecord::client_peer).
inline constexpr std::uint32_t kVersion = 3;

// Bounds the receiver holds every length to, whatever the sender says.
inline constexpr std::uint32_t kMaxRecords = 1U << 20;  // far above max_connections' default
// A copy round's buffer (plane/copy_plane.cpp, the splice plane's copy round): what a
// direction can hold in userspace at most.
inline constexpr std::uint32_t kMaxBufferedBytes = 64 * 1024;
// A splice plane pipe asks for 1 MiB (F_SETPIPE_SZ); the kernel's pipe-max-size is 1 MiB by
// default and root may raise it: 16 MiB is far over any pipe the daemon makes.
inline constexpr std::uint32_t kMaxPipeBytes = 16 * 1024 * 1024;
inline constexpr std::uint32_t kMaxProtocolBytes = 64;  // a rule's protocol name, for logs
// fds in one handover: 2 sockets and up to 2 pipes (4 fds) per connection.
inline constexpr std::uint32_t kMaxFds = 6 * kMaxRecords;

// "No fd" in an fd index field.
inline constexpr std::uint32_t kNoFd = 0xffffffffU;

enum class PlaneKind : std::uint8_t { copy = 1, splice = 2, sockmap = 3 };

struct DirectionRecord {
    std::uint64_t bytes = 0;         // delivered to the sink so far (for the close line)
    bool source_eof = false;         // the source's FIN was read (nothing of it is pending)
    bool sink_shut = false;          // shutdown(sink, SHUT_WR) done: the direction is over
    bool source_braked = false;      // plane/sink_watch.h: the source's SO_RCVBUF is locked
    bool braked_by_watch = false;
    bool consumed_known = false;     // plane/urgent_data.h: payload consumed at plane start
    std::uint64_t consumed_at_start = 0;
    // splice plane: a pipe holding `in_pipe` bytes on their way to the sink (indexes into
    // the fd array), or kNoFd both with in_pipe 0
    std::uint32_t pipe_read = kNoFd;
    std::uint32_t pipe_write = kNoFd;
    std::uint32_t in_pipe = 0;
    // sockmap plane (include/splicer/flow_accounting.h, plane/flow.h): the source socket's
    // baseline taken at insertion, and the passed bytes copied so far (as told to the
    // verdict) with the urgent bytes left out of them
    std::uint64_t baseline_consumed = 0;
    std::uint64_t baseline_written = 0;
    std::uint64_t copied = 0;
    std::uint64_t urgent_removed = 0;
    // copy round: bytes read from the source and not yet written to the sink, in order
    std::vector<std::byte> buffered;
};

// An address as a record carries it: the client as a PROXY header named it, or the client
// socket's peer. Family 0: none.
struct ClientAddress {
    std::uint8_t family = 0;  // 0, 4 or 6
    std::uint16_t port = 0;
    std::array<std::uint8_t, 16> address{};  // network order; IPv4 in the first 4 bytes
};

struct ConnectionRecord {
    PlaneKind plane = PlaneKind::copy;
    std::uint64_t id = 0;                // the old process's connection id, for logs
    std::uint32_t client = kNoFd;        // fd index of the client socket
    std::uint32_t backend = kNoFd;       // fd index of the backend socket
    std::uint32_t listener = 0;          // index of the listener that accepted it
    std::uint64_t age_ms = 0;            // since it was accepted (the close line's duration)
    std::string protocol;                // the rule's protocol name, for logs
    std::array<DirectionRecord, 2> directions;  // client -> backend, backend -> client
    // The client as a PROXY header named it (`proxyprotocol: true` listeners), when it is not
    // the socket's peer: the peer is then the balancer, and per-client limits and logs must
    // go on counting the client. Family 0: the socket's peer is the client.
    ClientAddress proxied_client;
    // The client socket's peer as the old process knew it: a socket closed since (its
    // peer's RST, or FINs both ways, while the pair was between two processes) answers no
    // getpeername, and the adopting loop would count and log it as nobody's.
    ClientAddress client_peer;
};

}  // namespace splicer::handoff
