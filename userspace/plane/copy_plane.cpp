#include "plane/copy_plane.h"

#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <string>

#include "memory/buffer_pool.h"

#include "plane/end_reason.h"
#include "plane/flow_handoff.h"
#include "plane/sink_watch.h"
#include "plane/source_error.h"
#include "plane/urgent_data.h"

namespace splicer::plane {
namespace {

using Op = PlaneOp;

constexpr std::size_t kBufferBytes = 64 * 1024;
static_assert(kBufferBytes == handoff::kMaxBufferedBytes, "a record carries one buffer");
// Spare buffers the loop's copy plane keeps for its next busy directions (256 KiB): a
// stream that empties its buffer gives it back and takes one again at its next bytes, and a
// buffer has pages of its own (daemon/heap_trim.cpp: kMmapThresholdBytes), so without spares
// each such round would map and unmap one.
constexpr std::size_t kBuffersKept = 4;

// A direction holds its buffer only while bytes are in it: an idle connection waits for its
// source with a poll and no buffer, so 10,000 idle copy-plane connections cost no 1.25 GB of
// buffers (each was 2 x 64 KiB for its life, touched by its first bytes). The bytes are read
// with a non-blocking recv() once the source is readable, or straight after a full buffer
// was sent (a busy stream keeps its buffer and never waits for a poll).
//
// The loop's thread makes the recv and the send itself, and the ring only waits: a poll on
// the source, and a send of what a full sink did not take. Sent through the ring, each flight
// cost a recv, a send's submission and completion, and a second recv answering EAGAIN before
// its poll (scripts/bench 2026-12-06, 3 interleaved pairs at load 6-8: spliced TLS keep-alive
// 40,806/43,125/46,803 -> 70,443/63,958/68,218 req/s, new TLS connections 3,001/3,020/3,286
// -> 3,325/3,669/3,594 per second, bulk level).

class CopyPlane final : public DataPlane {
public:
    [[nodiscard]] std::string_view name() const override { return "copy"; }
    [[nodiscard]] std::uint64_t urgent_bytes_dropped() const override { return urgent_bytes_; }
    void count_bytes(DaemonCounters& counters) const override {
        for (std::size_t direction = 0; direction < 2; ++direction) {
            counters.bytes[static_cast<std::size_t>(PlaneLabel::copy)][direction] +=
                bytes_[direction];
        }
    }

    void start(Flow& connection, PlaneContext& context) override {
        note_consumed_at_start(connection);
        for (std::uint8_t direction = 0; direction < 2; ++direction) {
            // A fallback pair may come with the sockmap plane's buffer, of another size.
            connection.plane->directions[direction].buffer.reset();
            receive(connection, direction, context);
            if (context.closing(connection)) {
                return;
            }
        }
    }

    void on_completion(Flow& connection, const PlaneTag& tag, int result, std::uint32_t /*flags*/,
                       PlaneContext& context) override {
        if (tag.op == Op::plane_watch) {
            connection.plane->watch_armed = false;
        }
        if (context.closing(connection)) {
            return;
        }
        if (connection.quiescing) {
            settle_flags(connection, tag);
            if (tag.op == Op::plane_recv || tag.op == Op::plane_send) {
                bytes_[tag.arg & 1U] += settle_copy_round(connection, tag, result, true);
            }
            return;
        }
        if (tag.op == Op::plane_watch) {
            // A send in flight holds bytes for its sink.
            const std::array<bool, 2> held{
                connection.plane->directions[0].sent < connection.plane->directions[0].filled,
                connection.plane->directions[1].sent < connection.plane->directions[1].filled};
            if (on_watch(connection, context, held)) {
                watch_held_sources(connection, held, context);
            }
            return;
        }
        const std::uint8_t direction = tag.arg;
        if (tag.op == Op::plane_hangup) {
            on_source_error(connection, direction, result, context);
            return;
        }
        Direction& flow = connection.plane->directions[direction];
        if (tag.op == Op::plane_readable) {
            // Bytes, the FIN or an error: the recv reports which.
            receive(connection, direction, context);
            return;
        }
        if (tag.op == Op::plane_send) {
            if (result <= 0) {
                context.abort_connection(connection, failed_call("send", -result, 1 - direction));
                return;
            }
            note_sent(connection, direction, static_cast<std::size_t>(result), context);
            if (flow.sent < flow.filled) {
                send_rest(connection, direction, context);
            } else {
                after_sent(connection, direction, context);
            }
        }
    }

    void on_teardown(Flow& connection) override {
        for (Direction& flow : connection.plane->directions) {
            buffers_.give_back(std::move(flow.buffer));
        }
    }

    [[nodiscard]] std::optional<handoff::PlaneKind> handoff_kind() const override {
        return handoff::PlaneKind::copy;
    }

    void export_flow(Flow& connection, handoff::ConnectionRecord& record,
                     std::vector<UniqueFd>& fds) override {
        record.plane = handoff::PlaneKind::copy;
        export_flow_common(connection, record, fds);
    }

    // Each direction goes on where it stood: bytes a recv took and no send delivered yet
    // are sent first; a direction whose sink is shut is over. A source whose FIN was read
    // before the move is read again: it returns 0 again and finishes the direction here.
    void adopt(Flow& connection, PlaneContext& context) override {
        if (connection.plane->directions[0].sink_shut &&
            connection.plane->directions[1].sink_shut) {
            context.close_connection(connection, "done");
            return;
        }
        for (std::uint8_t direction = 0; direction < 2; ++direction) {
            Direction& flow = connection.plane->directions[direction];
            if (flow.sink_shut) {
                continue;
            }
            if (flow.sent < flow.filled) {
                send_rest(connection, direction, context);  // import_flow made the buffer
            } else {
                receive(connection, direction, context);
            }
            if (context.closing(connection)) {
                return;
            }
        }
    }

private:
    // Reads what the source of `direction` has now into the direction's buffer (taken from
    // the pool if it has none) and sends it on; with nothing to read yet, gives the buffer
    // back and waits for the source with a poll.
    void receive(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        if (!flow.buffer) {
            flow.buffer = buffers_.take();
        }
        const ssize_t got = ::recv(connection.source_fd(direction), flow.buffer.get(),
                                   kBufferBytes, MSG_DONTWAIT);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            buffers_.give_back(std::move(flow.buffer));
            wait_for_input(connection, direction, context);
            return;
        }
        on_received(connection, direction, got < 0 ? -errno : static_cast<int>(got), context);
    }

    void on_received(Flow& connection, std::uint8_t direction, int result,
                     PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        if (result == 0) {
            buffers_.give_back(std::move(flow.buffer));
            // recv() skipped any urgent byte (plane/urgent_data.h): count them now.
            urgent_bytes_ += urgent_bytes_skipped(connection, direction);
            source_read_zero(connection, direction, context);
            return;
        }
        if (result < 0) {
            context.abort_connection(connection, failed_call("recv", -result, direction));
            return;
        }
        flow.filled = static_cast<std::size_t>(result);
        flow.sent = 0;
        send_now(connection, direction, context);
    }

    // Sends the buffer from the loop's thread (MSG_DONTWAIT: it never waits); what the sink
    // has no room for goes out from the ring, which waits for the room.
    void send_now(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        const ssize_t sent = ::send(connection.sink_fd(direction), flow.buffer.get(),
                                    flow.filled, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0 && errno != EAGAIN && errno != EINTR) {
            context.abort_connection(connection, failed_call("send", errno, 1 - direction));
            return;
        }
        if (sent > 0) {
            note_sent(connection, direction, static_cast<std::size_t>(sent), context);
        }
        if (flow.sent < flow.filled) {
            send_rest(connection, direction, context);
            return;
        }
        after_sent(connection, direction, context);
    }

    void note_sent(Flow& connection, std::uint8_t direction, std::size_t sent,
                   PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        flow.sent += sent;
        flow.bytes += sent;
        bytes_[direction] += sent;
        arm_watch(connection, context);  // the sink may hold them a while
    }

    // The buffer went out. A recv that filled it likely left more in the source: read again
    // at once (a busy stream never waits for a poll). A shorter one emptied the source, and
    // reading again would only answer EAGAIN (a request's or a response's second recv):
    // wait for the source instead, holding no buffer.
    void after_sent(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        if (flow.filled == kBufferBytes) {
            receive(connection, direction, context);
            return;
        }
        buffers_.give_back(std::move(flow.buffer));
        wait_for_input(connection, direction, context);
    }

    static void wait_for_input(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        io_uring_sqe* sqe = context.sqe_for(connection, Op::plane_readable, direction);
        io_uring_prep_poll_add(sqe, connection.source_fd(direction), POLLIN | POLLRDHUP);
    }

    static void send_rest(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        io_uring_sqe* sqe = context.sqe_for(connection, Op::plane_send, direction);
        io_uring_prep_send(sqe, connection.sink_fd(direction), flow.buffer.get() + flow.sent,
                           flow.filled - flow.sent, MSG_NOSIGNAL);
    }

    memory::BufferPool buffers_{kBufferBytes, kBuffersKept, kBuffersKept};  // a fixed number
    std::uint64_t urgent_bytes_ = 0;
    std::array<std::uint64_t, 2> bytes_{};  // delivered, per direction (count_bytes)
};

}  // namespace

std::unique_ptr<DataPlane> make_copy_plane() { return std::make_unique<CopyPlane>(); }

}  // namespace splicer::plane
