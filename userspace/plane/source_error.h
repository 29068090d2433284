#pragma once
// The splice and copy planes read a direction's source only between rounds, and the sockmap
// plane polls it only while no copy of passed bytes is under way: while a round waits for its
// sink (a client that does not read), no call of theirs is on that source, so the source's
// RST went unnoticed until stall_timeout (120 s by default) and the other peer was never
// told (HAProxy sees it at once: its epoll always reports an error). So while a round holds
// bytes for a blocked sink, a poll waits on its source for an error: io_uring always adds
// POLLERR, POLLHUP and POLLRDHUP to a poll's mask (io_uring/poll.c, IO_POLL_UNMASK, every
// kernel since 5.1), so a mask of POLLERR alone fires on the RST and on the FIN, never on
// bytes. The plane arms it from its watch (plane/sink_watch.h), which fires while bytes wait
// (every second at most): a pair whose writes complete at once, or an idle one, holds none.

#include <array>
#include <cstdint>

#include "plane/data_plane.h"
#include "plane/flow.h"

namespace splicer::plane {

// Arms the poll on the source of `direction`, unless it is armed or its FIN was seen.
void watch_source_error(Flow& connection, std::uint8_t direction, PlaneContext& context);

// On the plane's watch: watch_source_error for each direction whose round holds bytes
// (`held`, as given to on_watch). A direction holding none has its own call on its source.
void watch_held_sources(Flow& connection, const std::array<bool, 2>& held, PlaneContext& context);

// The poll (PlaneOp::plane_hangup) completed with `result` (poll revents or -errno).
// A pending error on the source (SO_ERROR: ECONNRESET for a RST) ends the pair with a RST to
// the other peer, named as the plane's own calls name it (plane/end_reason.h). A FIN ends
// the watch: the poll would fire again at once, and the direction's own round meets the FIN.
void on_source_error(Flow& connection, std::uint8_t direction, int result, PlaneContext& context);

}  // namespace splicer::plane
