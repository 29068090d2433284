#include "plane/splice_plane.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <limits>
#include <string>

#include "plane/end_reason.h"
#include "plane/flow_handoff.h"
#include "plane/pipe_pool.h"
#include "plane/sink_watch.h"
#include "plane/source_error.h"
#include "plane/urgent_data.h"

namespace splicer::plane {
namespace {

using Op = PlaneOp;

// F_SETPIPE_SZ asks for this; the kernel may round it or refuse (then 64 KiB stays).
constexpr int kPipeBytes = 1024 * 1024;

// The backend socket's receive buffer (SO_RCVBUF, doubled by the kernel: 1 MiB). scripts/bench
// 2026-12-04, two runs each: never-reading client 4.25 and 5.58 MiB against 5.20 and 5.67
// with 2 MiB (HAProxy 4.30-6.93 in the same runs), slow reader 4.0/5.1 against 6.1/6.0 MiB,
// one-stream bulk within noise (11.8/11.6 and 13.2/12.5 Gb/s against 11.0/12.0 and
// 13.3/12.8).
constexpr int kSpliceBackendReceiveBytes = 512 * 1024;

// A sink that a poll cannot wait for (wait_for_room) is retried after 1 ms, then 2, 4, ...
// up to 64 ms while it takes nothing: a client that half-closed and never reads costs about
// 16 wake-ups a second, one that reads fast waits little.
constexpr long kRoomRetryFirstNanoseconds = 1'000'000;
constexpr unsigned kRoomRetryDoublings = 6;

// A round without a pipe (every pipe taken) moves at most this much through a buffer.
constexpr std::size_t kCopyBytes = 64 * 1024;
static_assert(kCopyBytes == handoff::kMaxBufferedBytes, "a record carries one buffer");

// The sockets and pipes are non-blocking, and so is every splice: a splice that cannot
// proceed answers EAGAIN instead of waiting, in the loop's thread or in the ring.
constexpr unsigned kSpliceFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

// Each direction goes round: wait (a poll on the source, holding nothing) -> take a pipe ->
// splice source -> pipe -> splice pipe -> sink until the pipe is empty -> give the pipe
// back -> wait. An idle connection thus holds its two sockets and no pipe. When the pool has
// no pipe to give, the round is a copy through a buffer instead (recv -> send), as HAProxy
// falls back to recv/send when it runs out of maxpipes. At a TCP urgent byte, where splice
// cannot go on, the round is a copy too: the recv steps over the byte (plane/urgent_data.h).
//
// The loop's thread makes the splices itself (splice(2), which never waits here), and the
// ring only waits: a poll on the source, and a poll for room on a sink found full (a timer
// where that poll cannot wait: wait_for_room). io_uring has no non-blocking attempt for
// IORING_OP_SPLICE: it hands every one to an io-wq worker thread, so each flight cost two
// thread hand-offs and three loop wake-ups; made here it costs one wake-up (the source's
// poll) and two system calls. scripts/bench 2026-12-06, 3 interleaved pairs: spliced TLS
// keep-alive 52,848/49,888/55,063 -> 71,537/64,859/69,025 req/s, new TLS connections
// 3,375/3,209/3,238 -> 3,432/3,490/3,452 per second, bulk level.
class SplicePlane final : public DataPlane {
public:
    [[nodiscard]] std::string_view name() const override { return "splice"; }

    void set_max_pipes(std::uint32_t max_pipes) override {
        pipes_ = PipePool(max_pipes, kPipeBytes);
    }

    void start(Flow& connection, PlaneContext& context) override {
        connection.plane_started = true;
        // Its rounds read the backend as fast as a pipe holds (1 MiB), which made TCP
        // autotuning grow the backend socket's receive buffer to 10 MiB and more, all of it
        // then waiting for a client that stopped (scripts/bench neverread: 18.9 MiB per
        // client; 5.2 with this, HAProxy 4.5). Braking a source when its sink is found full
        // (a short splice out), as the sockmap plane does, cost a quarter of one-stream bulk:
        // a client's upload lost its window in every run.
        brake_source(connection, kBackendToClient, kSpliceBackendReceiveBytes);
        ++connections_;
        note_consumed_at_start(connection);
        for (std::uint8_t direction = 0; direction < 2; ++direction) {
            wait_for_input(connection, direction, context);
        }
    }

    void on_completion(Flow& connection, const PlaneTag& tag, int result, std::uint32_t /*flags*/,
                       PlaneContext& context) override {
        if (tag.op == Op::plane_watch) {
            connection.plane->watch_armed = false;
        }
        if (tag.op == Op::plane_timer) {
            connection.plane->plane_timer_armed = false;
        }
        if (context.closing(connection)) {
            return;  // on_teardown gives the pipes back
        }
        if (connection.quiescing) {
            settle(connection, tag, result);
            return;
        }
        if (tag.op == Op::plane_watch) {
            const std::array<bool, 2> held{holds_bytes(connection.plane->directions[0]),
                                           holds_bytes(connection.plane->directions[1])};
            if (on_watch(connection, context, held)) {
                watch_held_sources(connection, held, context);
            }
            return;
        }
        const std::uint8_t direction = tag.arg;
        switch (tag.op) {
            case Op::plane_hangup:
                on_source_error(connection, direction, result, context);
                break;
            case Op::plane_readable: start_round(connection, direction, context); break;
            case Op::plane_room: on_room(connection, direction, result, context); break;
            case Op::plane_timer: on_timer(connection, context); break;
            case Op::plane_recv: on_received(connection, direction, result, context); break;
            case Op::plane_send: on_sent(connection, direction, result, context); break;
            default: break;
        }
    }

    void on_teardown(Flow& connection) override {
        if (!connection.plane_started) {
            return;
        }
        for (Direction& flow : connection.plane->directions) {
            if (!flow.pipe_write.valid()) {
                continue;
            }
            // A completion ignored while closing may have left bytes in it: ask the pipe.
            int queued = 0;
            const bool empty =
                ::ioctl(flow.pipe_read.get(), FIONREAD, &queued) == 0 && queued == 0;
            Pipe pipe = take_pipe_from(flow);
            if (empty) {
                pipes_.give_back(std::move(pipe));
            } else {
                pipes_.discard(std::move(pipe));
            }
        }
        if (--connections_ == 0) {
            pipes_.drop_spares();
        }
    }

    [[nodiscard]] std::uint64_t pipe_shortages() const override { return pipes_.shortages(); }
    [[nodiscard]] std::uint64_t urgent_bytes_dropped() const override { return urgent_bytes_; }
    void count_bytes(DaemonCounters& counters) const override {
        for (std::size_t direction = 0; direction < 2; ++direction) {
            counters.bytes[static_cast<std::size_t>(PlaneLabel::splice)][direction] +=
                bytes_[direction];
        }
    }

    [[nodiscard]] std::optional<handoff::PlaneKind> handoff_kind() const override {
        return handoff::PlaneKind::splice;
    }

    // A pipe holding bytes moves with its connection (its two fds and the count): the bytes
    // stay in the kernel, nothing is copied or waited for, and the adopting loop splices
    // them out first. Draining it here instead would mean a userspace copy of up to 1 MiB
    // per direction into the record, or waiting for a sink that may not read. An empty pipe
    // goes back to this plane's pool.
    void export_flow(Flow& connection, handoff::ConnectionRecord& record,
                     std::vector<UniqueFd>& fds) override {
        record.plane = handoff::PlaneKind::splice;
        export_flow_common(connection, record, fds);
        for (std::size_t d = 0; d < 2; ++d) {
            Direction& flow = connection.plane->directions[d];
            if (!flow.pipe_write.valid()) {
                continue;
            }
            int queued = 0;
            if (::ioctl(flow.pipe_read.get(), FIONREAD, &queued) == 0 && queued == 0) {
                give_pipe_back(flow);
                continue;
            }
            // The count the record carries is the pipe's own: the receiver checks it.
            record.directions[d].in_pipe = static_cast<std::uint32_t>(std::max(queued, 0));
            record.directions[d].pipe_read =
                static_cast<std::uint32_t>(fds.size());
            fds.push_back(std::move(flow.pipe_read));
            record.directions[d].pipe_write =
                static_cast<std::uint32_t>(fds.size());
            fds.push_back(std::move(flow.pipe_write));
            pipes_.handed_away();
            flow.in_pipe = 0;
        }
    }

    // Each direction goes on where it stood: a pipe's bytes are spliced out first, a copy
    // round's buffered bytes sent; a direction whose sink is shut is over; the others wait
    // for their source (which reports a FIN read before the move again).
    void adopt(Flow& connection, PlaneContext& context) override {
        connection.plane_started = true;
        ++connections_;
        if (connection.plane->directions[0].sink_shut &&
            connection.plane->directions[1].sink_shut) {
            context.close_connection(connection, "done");
            return;
        }
        for (std::uint8_t direction = 0; direction < 2; ++direction) {
            Direction& flow = connection.plane->directions[direction];
            if (flow.pipe_write.valid()) {
                pipes_.adopted();
            }
            if (flow.sink_shut) {
                continue;
            }
            if (flow.pipe_write.valid() && flow.in_pipe > 0) {
                splice_out(connection, direction, context);
            } else if (flow.buffer && flow.sent < flow.filled) {
                send_rest(connection, direction, context);
            } else {
                wait_for_input(connection, direction, context);
            }
        }
    }

private:
    // A completion while the connection is quiesced for export: what it moved is recorded,
    // nothing is submitted (plane/flow_handoff.h).
    void settle(Flow& connection, const PlaneTag& tag, int result) {
        settle_flags(connection, tag);
        const std::size_t direction = tag.arg & 1U;
        switch (tag.op) {
            case Op::plane_recv:
            case Op::plane_send:
                bytes_[direction] += settle_copy_round(connection, tag, result, false);
                break;
            default: break;  // polls and timers: what they waited for is looked at again after
                             // the move (the splices themselves are never in flight)
        }
    }

    // Bytes in the direction's pipe, or in its buffer and not yet sent.
    static bool holds_bytes(const Direction& flow) {
        return flow.in_pipe > 0 || (flow.buffer && flow.sent < flow.filled);
    }

    static Pipe take_pipe_from(Direction& flow) {
        return Pipe{std::move(flow.pipe_read), std::move(flow.pipe_write)};
    }

    void give_pipe_back(Direction& flow) { pipes_.give_back(take_pipe_from(flow)); }

    static void wait_for_input(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        io_uring_sqe* sqe = context.sqe_for(connection, Op::plane_readable, direction);
        io_uring_prep_poll_add(sqe, connection.source_fd(direction), POLLIN | POLLRDHUP);
    }

    // The source has bytes, its EOF or an error: move them through a pipe if one is free,
    // else through a buffer. Either way the next operation reports EOF and errors.
    void start_round(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        if (std::optional<Pipe> pipe = pipes_.take()) {
            flow.pipe_read = std::move(pipe->read);
            flow.pipe_write = std::move(pipe->write);
            const ssize_t moved = ::splice(connection.source_fd(direction), nullptr,
                                           flow.pipe_write.get(), nullptr, kPipeBytes,
                                           kSpliceFlags);
            on_spliced_in(connection, direction, moved < 0 ? -errno : static_cast<int>(moved),
                          context);
            return;
        }
        copy_round(connection, direction, context);
    }

    // One round through a buffer: recv (which also steps over an urgent byte), then send.
    static void copy_round(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        flow.buffer = std::make_unique_for_overwrite<std::byte[]>(kCopyBytes);
        io_uring_sqe* sqe = context.sqe_for(connection, Op::plane_recv, direction);
        // MSG_DONTWAIT: a spurious wake-up comes back as -EAGAIN instead of parking the buffer.
        io_uring_prep_recv(sqe, connection.source_fd(direction), flow.buffer.get(), kCopyBytes,
                           MSG_DONTWAIT);
    }

    // The source read 0 (its FIN, or a reset another call reported) and every byte before
    // it was delivered.
    void source_ended(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        urgent_bytes_ += urgent_bytes_skipped(connection, direction);
        source_read_zero(connection, direction, context);
    }

    void on_spliced_in(Flow& connection, std::uint8_t direction, int result,
                       PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        if (result == -EAGAIN || result == 0) {
            give_pipe_back(flow);  // empty: nothing was spliced in
            // Splice stops at an urgent byte (EAGAIN, or 0 when the FIN follows) while poll
            // keeps reporting the bytes behind it: one recv() steps over it (urgent_data.h).
            if (at_urgent_mark(connection.source_fd(direction))) {
                copy_round(connection, direction, context);
            } else if (result == 0) {
                source_ended(connection, direction, context);
            } else {
                wait_for_input(connection, direction, context);  // a spurious wake-up
            }
            return;
        }
        if (result < 0) {
            context.abort_connection(connection, failed_call("splice", -result, direction));
            return;
        }
        flow.in_pipe = static_cast<std::size_t>(result);
        splice_out(connection, direction, context);
    }

    // `result` bytes (> 0) left the pipe for the sink.
    void on_spliced_out(Flow& connection, std::uint8_t direction, int result,
                        PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        flow.room_retries = 0;
        flow.in_pipe -= static_cast<std::size_t>(result);
        flow.bytes += static_cast<std::uint64_t>(result);
        bytes_[direction] += static_cast<std::uint64_t>(result);
        arm_watch(connection, context);  // the sink may hold them a while
        look_at_reader(connection, direction);
        if (flow.in_pipe > 0) {
            splice_out(connection, direction, context);
            return;
        }
        give_pipe_back(flow);
        wait_for_input(connection, direction, context);
    }

    // Bytes went out toward the client. Once its reader has proven fast (DrainWatch), the
    // backend's brake is released: TCP autotuning grows its receive buffer again, as before
    // any brake (scripts/bench 2026-12-04, backend to client: 12.0-12.6 Gb/s braked against
    // 12.4-13.0 unbraked). One TCP_INFO per splice out until then (what the reader took is
    // what proves it fast; a short splice only says the send buffer was full at that
    // moment), none after; a reader that stops is braked again by the watch.
    static void look_at_reader(Flow& connection, std::uint8_t direction) {
        Direction& flow = connection.plane->directions[direction];
        if (direction != kBackendToClient || flow.drain.raised()) {
            return;
        }
        auto look = look_at_sink(connection.sink_fd(direction), true);
        if (look && flow.drain.full(*look)) {
            release_brake(connection, direction);
        }
    }

    // Splices what the pipe holds to the sink now; a sink with no room for the rest is
    // waited for (a short splice comes back here, and the next attempt answers EAGAIN).
    void splice_out(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        const Direction& flow = connection.plane->directions[direction];
        const ssize_t moved = ::splice(flow.pipe_read.get(), nullptr,
                                       connection.sink_fd(direction), nullptr, flow.in_pipe,
                                       kSpliceFlags);
        if (moved > 0) {
            on_spliced_out(connection, direction, static_cast<int>(moved), context);
        } else if (moved < 0 && errno != EAGAIN && errno != EINTR) {
            context.abort_connection(connection, failed_call("splice", errno, 1 - direction));
        } else {
            wait_for_room(connection, direction, context);
        }
    }

    // The sink is full. A poll for POLLOUT waits for its room, unless the sink's peer sent its
    // FIN: io_uring adds POLLRDHUP to every poll's mask, so the poll would answer at once, and
    // the plane would spin a core until that peer read (a client that half-closes and reads
    // slowly, or never). Such a sink is retried on the plane's timer instead, 1 ms after the
    // first failed attempt and twice as long after each further one, up to 64 ms; any
    // progress starts again at 1 ms.
    static void wait_for_room(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        if (!flow.room_by_timer) {
            io_uring_sqe* sqe = context.sqe_for(connection, Op::plane_room, direction);
            io_uring_prep_poll_add(sqe, connection.sink_fd(direction), POLLOUT);
            return;
        }
        const unsigned doublings = std::min<unsigned>(flow.room_retries, kRoomRetryDoublings);
        flow.room_retries = static_cast<std::uint8_t>(std::min<unsigned>(
            flow.room_retries + 1U, kRoomRetryDoublings));
        PlaneState& plane = *connection.plane;
        if (plane.plane_timer_armed) {
            return;  // the other direction's wait; this one is retried with it
        }
        plane.plane_timer = {.tv_sec = 0, .tv_nsec = kRoomRetryFirstNanoseconds << doublings};
        io_uring_sqe* sqe = context.sqe_for(connection, Op::plane_timer, 0);
        io_uring_prep_timeout(sqe, &plane.plane_timer, 0, 0);
        plane.plane_timer_armed = true;
    }

    // The poll for room answered: room, an error the splice reports, or only the sink's
    // peer's FIN (no POLLOUT): then the timer waits for room from now on.
    void on_room(Flow& connection, std::uint8_t direction, int result, PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        const auto events = static_cast<unsigned>(result);
        if (result >= 0 && (events & (POLLOUT | POLLERR | POLLHUP)) == 0) {
            flow.room_by_timer = true;
        }
        splice_out(connection, direction, context);
    }

    // The timer for sinks that a poll cannot wait for: each direction still holding bytes
    // tries again (its splices are never in flight, so a pipe with bytes is a sink waiting).
    void on_timer(Flow& connection, PlaneContext& context) {
        for (std::uint8_t direction = 0; direction < 2; ++direction) {
            const Direction& flow = connection.plane->directions[direction];
            if (flow.room_by_timer && flow.pipe_read.valid() && flow.in_pipe > 0) {
                splice_out(connection, direction, context);
                if (context.closing(connection)) {
                    return;
                }
            }
        }
    }

    void on_received(Flow& connection, std::uint8_t direction, int result, PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        if (result == -EAGAIN || result == 0) {
            flow.buffer.reset();
            if (result == 0) {
                source_ended(connection, direction, context);
            } else {
                wait_for_input(connection, direction, context);
            }
            return;
        }
        if (result < 0) {
            context.abort_connection(connection, failed_call("recv", -result, direction));
            return;
        }
        flow.filled = static_cast<std::size_t>(result);
        flow.sent = 0;
        send_rest(connection, direction, context);
    }

    void on_sent(Flow& connection, std::uint8_t direction, int result, PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        if (result <= 0) {
            context.abort_connection(connection, failed_call("send", -result, 1 - direction));
            return;
        }
        flow.sent += static_cast<std::size_t>(result);
        flow.bytes += static_cast<std::uint64_t>(result);
        bytes_[direction] += static_cast<std::uint64_t>(result);
        arm_watch(connection, context);
        if (flow.sent < flow.filled) {
            send_rest(connection, direction, context);
            return;
        }
        flow.buffer.reset();  // held only while a round is under way
        wait_for_input(connection, direction, context);
    }

    static void send_rest(Flow& connection, std::uint8_t direction, PlaneContext& context) {
        Direction& flow = connection.plane->directions[direction];
        io_uring_sqe* sqe = context.sqe_for(connection, Op::plane_send, direction);
        io_uring_prep_send(sqe, connection.sink_fd(direction), flow.buffer.get() + flow.sent,
                           flow.filled - flow.sent, MSG_NOSIGNAL);
    }

    // Until set_max_pipes: no limit (the daemon always sets it from its fd plan).
    PipePool pipes_{std::numeric_limits<std::uint32_t>::max(), kPipeBytes};
    std::uint64_t connections_ = 0;  // started and not yet torn down
    std::uint64_t urgent_bytes_ = 0;
    std::array<std::uint64_t, 2> bytes_{};  // delivered, per direction (count_bytes)
};

}  // namespace

std::unique_ptr<DataPlane> make_splice_plane() { return std::make_unique<SplicePlane>(); }

}  // namespace splicer::plane
