#pragma once
// The watch every plane keeps on a spliced connection while bytes wait for one of its sinks.
// One timer per connection, armed only while something waits (a plane arms it whenever it
// wrote toward a sink; an idle connection has none, so 100,000 idle XMPP clients cost no
// syscall), that looks at each sink's TCP counters (one TCP_INFO per sink) and carries out
// plane::DrainWatch's verdicts: a sink whose reader took nothing for kLowerAfter gets a small
// send buffer (what is queued stays, nothing more is let in), and a pair whose bytes waited
// `stall_timeout` for a reader that took none is ended with a RST to both peers
// (end=stalled, counted as `stalled`).

#include <array>
#include <chrono>
#include <string_view>

#include "plane/data_plane.h"
#include "plane/drain_watch.h"
#include "plane/flow.h"
#include "splicer/result.h"

namespace splicer::plane {

inline constexpr std::string_view kEndStalled = "stalled";

// The send buffer of a sink whose reader stopped: SO_SNDBUF, which the kernel doubles, so
// 512 KiB of queue. Above what a slow reader needs (8 s at 64 KiB/s), far below the 4 MiB
// TCP autotuning lets one socket grow to, or the 16 MiB of a raised one.
inline constexpr int kLoweredSendBufferBytes = 256 * 1024;

// The receive buffer a braked source keeps: SO_RCVBUF, doubled by the kernel (1 MiB). TCP autotuning had grown it to 10 MiB and more (tcp_rmem's maximum) while
// the splice plane read fast, and every byte of it then waited for a reader that had stopped.
// A sink that is full limits the pair's rate anyway; a backend on the LAN fills 1 MiB faster
// than any WAN client drains it, and a client's upload keeps a window of about 700 KiB.
inline constexpr int kBrakedReceiveBufferBytes = 512 * 1024;

// Locks the source's receive buffer of `direction` at `bytes` (SO_RCVBUF), once per
// direction, so what the pair holds for a reader that stops is bounded by that and the
// sink's own send buffer. Called by the watch for the source of a sink whose reader
// stopped (SinkVerdict::lower, every plane); at start for the backend socket by the sockmap
// plane (brake_backend), whose verdict drains it into the client's send buffer at once,
// and by the splice plane, whose rounds read it fast enough for TCP autotuning to grow it to
// 10 MiB before the client's sink is ever found full. The copy plane reads 64 KiB at a time
// and autotuning keeps its receive buffers small.
void brake_source(Flow& connection, std::size_t direction, int bytes = kBrakedReceiveBufferBytes);
// The receive buffer of a source whose sink's reader has proven fast (DrainWatch::raised):
// SO_RCVBUF, doubled by the kernel (8 MiB; capped by net.core.rmem_max), from which TCP
// autotuning takes over again. The 1 MiB brake cost the sockmap plane 15% of one-stream bulk
// (scripts/bench 2026-12-04: 13.2-13.9 Gb/s before the brakes, 10.5-11.7 with them), since
// the sender's window then covers less than the psock backlog's one-jiffy pauses (kernel
// fact 3); a fixed 8 MiB still cost 10% of the backend-to-client stream (11.0-11.75 against
// 13.2-13.5): autotuning grows the backend's buffer to tcp_rmem's maximum (32 MiB here), and
// at 8 MiB the backend socket dropped 5x as many segments (ss: d11735 against d1860).
inline constexpr int kReleasedReceiveBufferBytes = 4 * 1024 * 1024;

// Undoes brake_source once the reader of `direction`'s sink has proven fast: the source's
// receive buffer goes to kReleasedReceiveBufferBytes and its size lock is lifted
// (SO_BUF_LOCK, Linux 5.14), so TCP autotuning grows it as for a socket never braked; a later
// brake_source (the reader stopped again) locks it small again.
void release_brake(Flow& connection, std::size_t direction);

// A sink whose reader stopped (SinkVerdict::lower) reads again (SinkVerdict::resumed): its
// send buffer goes back to TCP autotuning and the brake the stop put on its source is
// released (release_brake). Kept on, the brake stranded the source's sender: the 1 MiB lock
// came on while TCP autotuning had let the sender's window grow to 10 MiB, so the socket
// held more than its buffer (issue 13: 2.3 MB against 1 MiB, the client in zero-window
// probing with a doubling backoff); with the fast-reader proof (16 MiB at 32 MiB/s) the
// only way out, a braked upload stayed braked to its end.
void resume_after_stop(Flow& connection, std::size_t direction);

// brake_source for the backend socket, which sits on this host or its LAN, where 1 MiB is
// far over the bandwidth-delay product.
inline void brake_backend(Flow& connection) {
    brake_source(connection, kBackendToClient);
}

// How often the watch looks while bytes wait: a quarter of stall_timeout, between 250 ms
// and 1 s (1 s when it is off: the send buffers are still managed).
std::chrono::milliseconds watch_interval(std::chrono::seconds stall_timeout);

// One look at a sink (TCP_INFO): bytes its reader took, whether any wait unsent or
// unacknowledged. `held`: the plane holds bytes for it too.
Result<SinkLook> look_at_sink(int fd, bool held);

// Arms the connection's watch unless it is armed.
void arm_watch(Flow& connection, PlaneContext& context);

// The watch fired (PlaneOp::plane_watch; clears watch_armed). `held`, per direction: the plane
// holds bytes for that direction's sink. Returns false when it ended the pair (stalled).
bool on_watch(Flow& connection, PlaneContext& context, const std::array<bool, 2>& held);

}  // namespace splicer::plane
