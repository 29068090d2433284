#pragma once
// What an io_uring completion is about, packed into its 64-bit user_data: the operation, a
// small argument (which direction, which listener), the connection's slab slot and that
// slot's generation, so a late completion for a reused slot is recognised and dropped.

#include <cstdint>

namespace splicer::uring {

enum class Op : std::uint8_t {
    accept,          // multishot accept; arg = listener index
    signal,          // read on the signalfd
    probe_poll,      // client readable with more bytes than already peeked
    probe_timeout,   // the probe deadline
    connect,         // connect to the backend (linked to connect_timeout)
    connect_timeout, // the linked timeout; its own completion carries nothing to act on
    plane_recv,      // copy plane: recv on the source of direction `arg`
    plane_send,      // copy plane / sockmap fallback copy: send to the destination
    plane_splice_in, // splice plane: source socket -> pipe
    plane_splice_out,// splice plane: pipe -> destination socket
    plane_poll,      // sockmap plane: source of direction `arg` readable / closed / error
    plane_timer,     // sockmap plane: recheck pending EOFs and copies
    cancel,          // an async cancel or timeout removal; nothing to act on
    http_recv,       // port 80: recv from side `arg` (0 client, 1 backend) into its buffer
    http_send,       // port 80: send to side `arg`
    http_connect,    // port 80: connect to the route's backend (linked to http_timeout)
    http_timeout,    // the timeout linked to an http op; the op itself reports -ECANCELED
    accept_backoff,  // the pause after an accept failed for lack of fds/memory; arg = listener
    plane_readable,  // splice plane: source of direction `arg` has bytes, EOF or an error
    reload_done,     // read on the reload eventfd: a SIGHUP's prepared config is ready
    plane_watch,     // every plane: look at the sinks while bytes wait (plane/sink_watch.h)
};

struct Tag {
    Op op = Op::accept;
    std::uint8_t arg = 0;
    std::uint16_t generation = 0;
    std::uint32_t slot = 0;

    [[nodiscard]] std::uint64_t encode() const {
        return static_cast<std::uint64_t>(op) | (static_cast<std::uint64_t>(arg) << 8U) |
               (static_cast<std::uint64_t>(generation) << 16U) |
               (static_cast<std::uint64_t>(slot) << 32U);
    }
    static Tag decode(std::uint64_t data) {
        return Tag{static_cast<Op>(data & 0xffU), static_cast<std::uint8_t>((data >> 8U) & 0xffU),
                   static_cast<std::uint16_t>((data >> 16U) & 0xffffU),
                   static_cast<std::uint32_t>(data >> 32U)};
    }
};

}  // namespace splicer::uring
