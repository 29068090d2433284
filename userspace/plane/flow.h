#pragma once
// What a data plane knows of a connection: a Flow, the pair of sockets it moves bytes between
// (with the ids its io_uring tags and logs need) and the plane's own per-connection state,
// PlaneState, which the Flow points at once a plane serves it. The daemon's connection record (daemon/connection.h) is a Flow plus what only
// the daemon needs (probing, routing, HTTP); a plane is handed the Flow and sees nothing
// else, so nothing under plane/ depends on the daemon.

#include <linux/time_types.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "plane/drain_watch.h"
#include "splicer/flow_accounting.h"
#include "splicer/unique_fd.h"

namespace splicer::plane {

// Bytes flowing one way: direction 0 client -> backend, direction 1 backend -> client.
inline constexpr std::size_t kClientToBackend = 0;
inline constexpr std::size_t kBackendToClient = 1;

struct Direction {
    std::uint64_t bytes = 0;  // delivered to the sink (for logs)
    bool source_eof = false;  // the source sent its FIN and every byte before it was read
    bool sink_shut = false;   // shutdown(sink, SHUT_WR) done: this direction is finished
    // splice plane: the sink's peer sent its FIN, so a poll on the sink fires at once
    // (POLLRDHUP) and cannot wait for room: a full sink is retried on the plane's timer,
    // `room_retries` times in a row so far (each wait twice the last). Kept beside the flags
    // above, in what was their padding: PlaneState stays the size it was.
    bool room_by_timer = false;
    std::uint8_t room_retries = 0;

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
    // The source watch (sockmap_plane.cpp, arm_source_watch): a 1-byte MSG_PEEK recv in the
    // ring, or, once that answered EAGAIN (io-wq), a poll whose wake-ups a peek confirms.
    bool poll_armed = false;
    bool poll_deferred = false;  // re-arm the watch on the next timer (nothing readable)
    bool peek_retired = false;   // the watch is the poll from now on (else the ring's peek)
    bool sink_busy = false;      // at the last empty wake-up the sink held a bulk stream's bytes
    std::byte peek_byte{};       // where the ring's peek copies its byte (never read)
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
    DrainWatch drain;
    bool source_braked = false;  // the source's receive buffer was locked small (brake_source)
    bool braked_by_watch = false;  // ... by the watch, for a reader that stopped (sink_watch.h)
    // every plane: a poll for the source's reset while the round waits for the
    // sink (plane/source_error.h); ended, not armed again, once the source's FIN was seen
    bool source_error_armed = false;
    bool source_error_ended = false;
};

// The plane's per-connection state. It lives outside the connection record (Flow::plane),
// made when a plane starts serving the connection or adopts it from another process: a
// connection no plane ever serves (terminated TLS, port 80 without a 101) does not pay its
// ~580 bytes.
struct PlaneState {
    std::array<Direction, 2> directions;
    // sockmap plane: socket cookies and flow-accounting baselines, indexed like directions
    // (index 0 the client socket, the source of direction 0; index 1 the backend socket)
    std::array<std::uint64_t, 2> cookies{};
    std::array<SocketBaseline, 2> baselines{};
    // The daemon counted `baselines` itself before the plane started (PlaneHandler): the
    // sockmap plane then takes them as they are instead of reading the kernel's counters.
    bool baselines_known = false;
    bool plane_fallback = false;  // sockmap refused this pair: the copy plane serves it
    bool plane_timer_armed = false;
    bool watch_armed = false;  // PlaneOp::plane_watch pending (plane/sink_watch.h)
    // sockmap plane: the recheck timer's waits in a row with no copy under way
    // (recheck_interval)
    std::uint8_t idle_rechecks = 0;
    __kernel_timespec plane_timer{};  // read by the kernel while the timeout is pending
    __kernel_timespec watch_timer{};
};

// A connection as the planes see it. The record that holds it owns both sockets until its
// teardown runs; slot and generation name it in io_uring tags (uring/tag.h).
struct Flow {
    std::uint32_t slot = 0;
    std::uint16_t generation = 0;
    bool plane_started = false;  // DataPlane::start ran for this connection
    // handoff (userspace/handoff/README.md): the loop cancelled every operation of this
    // connection to export it; completions still arriving only record what they did
    // (plane/flow_handoff.h, settle_*), nothing new is submitted. Kept here, not in
    // PlaneState: the loop reads `quiescing` on every completion of every connection.
    bool quiescing = false;
    bool quiesced = false;       // ... and the last one arrived
    bool export_failed = false;  // one reported an error: ended here (RST), not exported
    bool exported = false;       // its sockets went to another loop: teardown leaves the maps
    std::uint64_t id = 0;        // for logs; never reused

    UniqueFd client;
    UniqueFd backend;

    // Null until a plane serves this connection (make_plane_state); freed with the record.
    std::unique_ptr<PlaneState> plane;

    // The plane state, made fresh if there is none yet (a plane starting, an adopt).
    PlaneState& make_plane_state() {
        if (!plane) {
            plane = std::make_unique<PlaneState>();
        }
        return *plane;
    }

    [[nodiscard]] int source_fd(std::size_t direction) const {
        return direction == kClientToBackend ? client.get() : backend.get();
    }
    [[nodiscard]] int sink_fd(std::size_t direction) const {
        return direction == kClientToBackend ? backend.get() : client.get();
    }
};

}  // namespace splicer::plane
