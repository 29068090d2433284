#include "plane/copy_plane.h"

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <string>

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
            connection.directions[direction].buffer = std::make_unique_for_overwrite<std::byte[]>(kBufferBytes);
            receive(connection, direction, context);
        }
    }

    void on_completion(Flow& connection, const PlaneTag& tag, int result, std::uint32_t /*flags*/,
                       PlaneContext& context) override {
        if (tag.op == Op::plane_watch) {
            connection.watch_armed = false;
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
                connection.directions[0].sent < connection.directions[0].filled,
                connection.directions[1].sent < connection.directions[1].filled};
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
        Direction& flow = connection.directions[direction];
        if (tag.op == Op::plane_recv) {
            if (result == 0) {
                // recv() skipped any urgent byte (plane/urgent_data.h): count them now.
                urgent_bytes_ += urgent_bytes_skipped(connection, direction);
                finish_direction(connection, direction, context);
                return;
            }
            if (result < 0) {
                context.abort_connection(connection, failed_call("recv", -result, direction));
                return;
            }
            flow.filled = static_cast<std::size_t>(result);
            flow.sent = 0;
            send_rest(connection, direction, context);
            return;
        }
        if (tag.op == Op::plane_send) {
            if (result <= 0) {
                context.abort_connection(connection, failed_call("send", -result, 1 - direction));
                return;
            }
            flow.sent += static_cast<std::size_t>(result);
            flow.bytes += static_cast<std::uint64_t>(result);
            bytes_[direction] += static_cast<std::uint64_t>(result);
            arm_watch(connection, context);  // the sink may hold them a while
            if (flow.sent < flow.filled) {
                send_rest(connection, direction, context);
            } else {
                receive(connection, direction, context);
            }
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
        if (connection.directions[0].sink_shut && connection.directions[1].sink_shut) {
            context.close_connection(connection, "done");
            return;
        }
        for (std::uint8_t direction = 0; direction < 2; ++direction) {
            Direction& flow = connection.directions[direction];
            if (!flow.buffer) {
                flow.buffer = std::make_unique_for_overwrite<std::byte[]>(kBufferBytes);
            }
            if (flow.sink_shut) {
                continue;
            }
            if (flow.sent < flow.filled) {
                send_rest(connection, direction, context);
            } else {
                receive(connection, direction, context);
            }
        }
    }

private:
    static void receive(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        io_uring_sqe* sqe = context.sqe_for(connection, Op::plane_recv, direction);
        io_uring_prep_recv(sqe, connection.source_fd(direction),
                           connection.directions[direction].buffer.get(), kBufferBytes, 0);
    }

    static void send_rest(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        Direction& flow = connection.directions[direction];
        io_uring_sqe* sqe = context.sqe_for(connection, Op::plane_send, direction);
        io_uring_prep_send(sqe, connection.sink_fd(direction), flow.buffer.get() + flow.sent,
                           flow.filled - flow.sent, MSG_NOSIGNAL);
    }

    std::uint64_t urgent_bytes_ = 0;
    std::array<std::uint64_t, 2> bytes_{};  // delivered, per direction (count_bytes)
};

}  // namespace

std::unique_ptr<DataPlane> make_copy_plane() { return std::make_unique<CopyPlane>(); }

}  // namespace splicer::plane
