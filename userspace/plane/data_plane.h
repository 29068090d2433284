#pragma once
// A data plane moves a connection's bytes once it is routed and connected: `sockmap` (the
// kernel redirects them through the BPF sockhash), `splice` (io_uring splice through a pipe
// per direction) or `copy` (io_uring recv/send through a userspace buffer). The event loop
// owns the connection and the ring; a plane sees only its Flow (plane/flow.h) and acts only
// through PlaneContext.

#include <liburing.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "handoff/record.h"
#include "plane/flow.h"
#include "plane/reader_stops.h"
#include "splicer/daemon_counters.h"
#include "uring/tag.h"

namespace splicer::plane {

// The planes' io_uring operations (uring::Owner::handler: a plane serves a connection as its
// handler; codes below uring::kHandlerOperations), named as in the flat list they came
// from. `arg` is the direction unless said otherwise.
enum class PlaneOp : std::uint8_t {
    plane_recv,        // copy plane: recv on the source of direction `arg`
    plane_send,        // copy plane / sockmap fallback copy: send to the destination
    plane_room,        // splice plane: a poll for room on the sink of direction `arg` (the
                       // loop splices in and out itself: splice_plane.cpp)
    plane_poll,        // sockmap plane: the watch on the source of direction `arg` (a 1-byte
                       // MSG_PEEK recv, or a poll): passed bytes readable, EOF or an error
    plane_timer,       // sockmap plane: recheck pending EOFs and copies; splice plane: retry
                       // a sink whose poll cannot wait for room (splice_plane.cpp)
    plane_readable,    // splice plane: source of direction `arg` has bytes, EOF or an error
    plane_watch,       // every plane: look at the sinks while bytes wait (plane/sink_watch.h)
    plane_hangup,      // every plane: the source of direction `arg` reset or hung up while
                       // its round waits for the sink (plane/source_error.h)
};
static_assert(uring::fits_in_handler_tag(PlaneOp::plane_hangup));
using PlaneTag = uring::OwnedTag<PlaneOp>;

class PlaneContext {
public:
    // An SQE whose completion comes back to the plane for `connection`, tagged (op, arg).
    virtual io_uring_sqe* sqe_for(Flow& connection, PlaneOp op, std::uint8_t arg) = 0;
    // Ends the connection (both sockets), logging `reason` as how it ended. Each peer still
    // connected gets a FIN first: for endings where every byte was delivered.
    virtual void close_connection(Flow& connection, std::string_view reason) = 0;
    // Ends a connection that finished in order both ways (end=done): each source's FIN was
    // read and each sink shut down after its last byte. Every poll on either socket fires on
    // the FIN that arrived and nothing else is in flight on them, so unlike close_connection
    // no shutdown(SHUT_RDWR) is made to wake one (on sockets whose FINs both went by it only
    // answered ENOTCONN: two system calls per connection).
    virtual void close_finished(Flow& connection) = 0;
    // Ends it with a RST to each peer and no FIN: for endings where bytes were or may have
    // been lost (a peer reset, a sink that can take nothing more), so that neither peer reads
    // a clean end of stream after a gap.
    virtual void abort_connection(Flow& connection, std::string_view reason) = 0;
    // The connection is closing (closed or aborted above, or by the daemon): a completion
    // still arriving for it has nothing left to do.
    [[nodiscard]] virtual bool closing(const Flow& connection) const = 0;
    // The configured stall_timeout (0: off), as of now: a reload changes it.
    [[nodiscard]] virtual std::chrono::seconds stall_timeout() const = 0;
    // Where the sink watch logs and counts readers that stop and resume.
    virtual ReaderStops& reader_stops() = 0;

protected:
    ~PlaneContext() = default;
};

class DataPlane {
public:
    virtual ~DataPlane() = default;
    [[nodiscard]] virtual std::string_view name() const = 0;

    // Both sockets are connected; the client's first bytes were only peeked and are still
    // queued on it, as is anything the backend already sent.
    virtual void start(Flow& connection, PlaneContext& context) = 0;

    // A completion of an operation this plane submitted for `connection`.
    virtual void on_completion(Flow& connection, const PlaneTag& tag, int result,
                               std::uint32_t flags, PlaneContext& context) = 0;

    // The connection is closing; called once, before its sockets are closed.
    virtual void on_teardown(Flow& /*connection*/) {}

    // The fd plan's pipe budget (limits::FdPlan::max_pipes), set once before the first
    // connection; only the splice plane holds pipes.
    virtual void set_max_pipes(std::uint32_t /*max_pipes*/) {}

    // handoff (userspace/handoff/README.md): established connections exported from one
    // loop and adopted by another. The kind of record this plane writes and reads; nullopt:
    // it does neither (its connections stay with the old loop, which drains them).
    [[nodiscard]] virtual std::optional<handoff::PlaneKind> handoff_kind() const {
        return std::nullopt;
    }
    // Whether `connection` can be exported now (asked before it is quiesced; a plane whose
    // connection is mid-way through something it cannot hand over says no, and the old loop
    // keeps serving it).
    [[nodiscard]] virtual bool can_export(const Flow& /*connection*/) const {
        return handoff_kind().has_value();
    }
    // `connection` is quiesced (no operation in flight, flow.quiescing): moves its sockets
    // and pipes into `fds` and its state into `record` (the flow keeps no fd afterwards;
    // on_teardown still runs).
    virtual void export_flow(Flow& /*connection*/, handoff::ConnectionRecord& /*record*/,
                             std::vector<UniqueFd>& /*fds*/) {}
    // `connection` was filled from a record (plane/flow_handoff.h, import_flow): resumes
    // every direction where it stood.
    virtual void adopt(Flow& /*connection*/, PlaneContext& /*context*/) {}
    // At `splicer upgrade`, the kind of record this plane adopts from the old process
    // (daemon/connection_handover.h); nullopt: none, the old process keeps and ends them.
    // The sockmap plane adopts only on the maps it reuses from the old one (its pairs are
    // pairs of no other sockhash).
    [[nodiscard]] virtual std::optional<handoff::PlaneKind> upgrade_kind() const {
        return handoff_kind();
    }
    // At `splicer upgrade`, in the new process: the old one was told this one serves.
    virtual void took_over() {}
    // At `splicer upgrade`, in the old process: the new one failed before it served. What it
    // may have replaced while it started and could not put back (the sockmap verdict: a
    // process that crashed runs no destructor) is this plane's again. Called on one plane:
    // the planes of one process share what it restores.
    virtual void upgrade_failed() {}

    // Connections this plane handed to a fallback plane (the sockhash refused them).
    [[nodiscard]] virtual std::uint64_t fallbacks() const { return 0; }
    // Rounds moved through a buffer because no pipe was free (splice plane).
    [[nodiscard]] virtual std::uint64_t pipe_shortages() const { return 0; }
    // Sockmap plane: completions of its source watches, and those that found nothing to read.
    [[nodiscard]] virtual std::uint64_t source_wakeups() const { return 0; }
    [[nodiscard]] virtual std::uint64_t empty_wakeups() const { return 0; }
    // Sockmap plane: looks at an EOF waiting for its sink (sockmap_eof_checks).
    [[nodiscard]] virtual std::uint64_t eof_checks() const { return 0; }
    // TCP urgent bytes (MSG_OOB) this plane did not deliver (plane/urgent_data.h).
    [[nodiscard]] virtual std::uint64_t urgent_bytes_dropped() const = 0;
    // Adds the payload bytes this plane delivered so far, each way, to counters.bytes under
    // its plane label (a plane that hands pairs to a fallback adds the fallback's too). Live:
    // bytes of connections still open are included.
    virtual void count_bytes(DaemonCounters& counters) const = 0;
};

// After direction `direction` saw EOF from its source and delivered everything before it:
// shuts the sink for writing, and ends the connection when both directions are finished
// (PlaneContext::close_finished: both FINs went by, no shutdown(SHUT_RDWR) is needed).
void finish_direction(Flow& connection, std::size_t direction, PlaneContext& context);

// The source of `direction` read 0 (recv or splice) with every byte before it delivered:
// the peer's FIN finishes the direction (finish_direction); a reset whose error another
// call took first (plane/end_reason.h, ended_by_reset) aborts the pair and names the peer,
// so the other peer gets the RST, not a FIN.
void source_read_zero(Flow& connection, std::size_t direction, PlaneContext& context);

}  // namespace splicer::plane
