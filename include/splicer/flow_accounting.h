#pragma once
// Byte accounting for the sockmap data plane: what a socket has taken in and put out since it
// entered the sockhash, read from the kernel's own TCP counters (TCP_INFO, SIOCINQ, SIOCOUTQ).
// Plain syscalls on fds, no event loop: the loop decides when to ask.
//
// Why it is needed (DESIGN.md, kernel facts 1, 2 and 4): bytes redirected by the verdict wait
// on the destination's psock queue, invisible to poll(); the only trustworthy evidence that
// they reached the destination's TCP send queue is the destination's own sequence numbers.
// Before copying bytes the verdict passed, and before propagating a FIN, the data plane must
// know that every earlier byte has been absorbed, or it reorders or truncates the stream.

#include <array>
#include <cstdint>
#include <optional>

#include "splicer/result.h"

namespace splicer::plane {

// Both counters of one socket, taken before it enters the sockhash (pair()). Each socket is
// the source of one direction and the destination of the other, so it needs both.
struct SocketBaseline {
    // tcpi_bytes_received - SIOCINQ (- 1 if a FIN already arrived): payload consumed from the
    // socket before insertion (by a recv() of the daemon). Bytes still queued (a peeked
    // ClientHello) are not included: they flow through the verdict after the kick, like every
    // later byte. A partly read skb is fine: the verdict trims what was read (copied_seq).
    std::uint64_t consumed = 0;
    // tcpi_bytes_acked + SIOCOUTQ: bytes written into the socket before insertion (a PROXY
    // header, say), plus 1 for the SYN on a connect()ed socket (the kernel counts the SYN's
    // sequence number as acked there, not on an accept()ed one).
    std::uint64_t written = 0;
};

// The baselines of a pair whose sockets the daemon has only peeked at and written counted
// bytes into: nothing was consumed from or written to the accept()ed client socket, nothing
// consumed from the connect()ed backend socket, and `backend_written` bytes (a PROXY header)
// written into it, after the SYN its bytes_acked counts. take_baseline() would read the same
// values from the kernel with 8 system calls per pair (4 per socket); a debug build checks
// that it does (plane/sockmap_plane.cpp).
inline std::array<SocketBaseline, 2> untouched_pair_baselines(std::uint64_t backend_written) {
    return {SocketBaseline{.consumed = 0, .written = 0},
            SocketBaseline{.consumed = 0, .written = 1 + backend_written}};
}

// Takes the baseline. Call before the socket goes into the sockhash and before anything
// else is written into it or read from it. Both values stay put while the peer sends or
// acknowledges (arrivals grow received and queued alike), but they come from separate reads,
// so the reads are repeated until nothing moved in between. (Inside the sockhash SIOCINQ
// means something else on 6.18: the psock's queue, tcp_bpf_ioctl.)
Result<SocketBaseline> take_baseline(int fd);

// Payload taken from a socket over its life, read once its FIN was read (a recv or splice
// answered 0): nothing more can arrive and nobody else reads it, so one TCP_INFO and one
// SIOCINQ give what take_baseline().consumed would, with 2 system calls instead of 4.
Result<std::uint64_t> consumed_after_eof(int fd);

// Bytes the destination's TCP send path has taken since the baseline: redirected bytes the
// psock backlog has sent plus bytes userspace copied. Includes its own FIN once shut down.
Result<std::uint64_t> bytes_absorbed(int dst_fd, const SocketBaseline& dst);

// Payload bytes that arrived on the source since the baseline, its FIN not included: every one
// of them is either still queued, redirected, or passed.
Result<std::uint64_t> bytes_arrived(int src_fd, const SocketBaseline& src);

// Has the destination taken every byte redirected to it, and every byte copied into it?
// `redirected` and `copied` are the source's LinkState values. Ask before copying passed bytes:
// the verdict passed them because it stopped redirecting, so once this holds nothing
// redirected is still queued ahead of them, and writing them now keeps the order.
Result<bool> redirects_absorbed(int dst_fd, const SocketBaseline& dst, std::uint64_t redirected,
                                std::uint64_t copied);

// May the source's EOF be propagated (shutdown(dst, SHUT_WR)) now? Kernel fact 4: the FIN
// overtakes redirected bytes still on dst's psock queue, so a shutdown on RDHUP truncates.
// True once the source has received its FIN and dst has absorbed every payload byte the
// source received since the baseline (tcpi_bytes_received - 1 for the FIN - baseline ==
// bytes_absorbed(dst)). False while bytes are queued on src, waiting on dst's psock queue, or
// passed and not yet copied. A reset source (no FIN) never qualifies: the caller sees the
// error on the socket. Recheck on a short timer while false; give up only when nothing moves.
// Keep copying while the link is passing even after recv() returned 0: a pass the kernel
// deferred (behind the socket's own egress queue) reaches the receive queue after the FIN.
// `undelivered`: bytes the source received that dst is never to get (TCP urgent bytes the
// verdict dropped or userspace left out of its copy).
// `absorbed`, if given, receives bytes_absorbed(dst) when it was read (the FIN arrived): a
// caller that waits on the sink's progress next needs no second read of it.
Result<bool> eof_may_propagate(int src_fd, const SocketBaseline& src, int dst_fd,
                               const SocketBaseline& dst, std::uint64_t undelivered = 0,
                               std::optional<std::uint64_t>* absorbed = nullptr);

// Can the socket never take another byte? True once it has a pending error (SO_ERROR, read
// and so cleared: call it only where a true answer ends the pair) or is closed (a RST ended
// it). Both ways redirected bytes queued for it are gone: the psock drops what it cannot send
// (a hard send error stops its transmit for good), so an absorption check would wait forever.
Result<bool> connection_broken(int fd);

// Kernel fact 1: bytes queued on a socket before it entered the sockhash are not run through
// the verdict until new bytes arrive. setsockopt(SO_RCVLOWAT, 1) makes tcp_set_rcvlowat()
// call the socket's data_ready, which is now the psock's, so the queued bytes go through the
// verdict in order. Call after pair(), on both sockets; harmless when nothing is queued.
Result<void> kick(int fd);

}  // namespace splicer::plane
