#include "plane/splice_plane.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace splicer::plane {
namespace {

using daemon::Connection;
using uring::Op;

// F_SETPIPE_SZ asks for this; the kernel may round it or refuse (then 64 KiB stays).
constexpr int kPipeBytes = 1024 * 1024;

// The kernel runs IORING_OP_SPLICE in an io-wq worker; without SPLICE_F_NONBLOCK that worker
// would block in the socket until data arrives, a kernel thread per idle direction. So each
// splice is linked behind a poll that waits until it can proceed, and is itself non-blocking.
constexpr unsigned kSpliceFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

class SplicePlane final : public DataPlane {
public:
    [[nodiscard]] std::string_view name() const override { return "splice"; }

    void start(Connection& connection, PlaneContext& context) override {
        for (std::uint8_t direction = 0; direction < 2; ++direction) {
            daemon::Direction& flow = connection.directions[direction];
            int fds[2] = {-1, -1};
            if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
                context.close_connection(connection, "pipe_error:" + std::to_string(errno));
                return;
            }
            flow.pipe_read.reset(fds[0]);
            flow.pipe_write.reset(fds[1]);
            ::fcntl(flow.pipe_write.get(), F_SETPIPE_SZ, kPipeBytes);
        }
        for (std::uint8_t direction = 0; direction < 2; ++direction) {
            splice_in(connection, direction, context);
        }
    }

    void on_completion(Connection& connection, const uring::Tag& tag, int result,
                       std::uint32_t /*flags*/, PlaneContext& context) override {
        if (connection.state == daemon::State::closing) {
            return;
        }
        const std::uint8_t direction = tag.arg;
        daemon::Direction& flow = connection.directions[direction];
        if (tag.op == Op::plane_poll) {
            return;  // the linked splice that follows reports the outcome
        }
        if (result == -EAGAIN || result == -ECANCELED) {
            // A spurious wake-up, or the poll ended with an error the next attempt reports.
            if (tag.op == Op::plane_splice_in) {
                splice_in(connection, direction, context);
            } else {
                splice_out(connection, direction, context);
            }
            return;
        }
        if (result < 0) {
            context.close_connection(connection, "splice_error:" + std::to_string(-result));
            return;
        }
        if (tag.op == Op::plane_splice_in) {
            if (result == 0) {
                finish_direction(connection, direction, context);  // pipe is empty here
                return;
            }
            flow.in_pipe = static_cast<std::size_t>(result);
            splice_out(connection, direction, context);
            return;
        }
        flow.in_pipe -= static_cast<std::size_t>(result);
        flow.bytes += static_cast<std::uint64_t>(result);
        if (flow.in_pipe > 0) {
            splice_out(connection, direction, context);
        } else {
            splice_in(connection, direction, context);
        }
    }

private:
    static void splice_in(Connection& connection, std::uint8_t direction, PlaneContext& context) {
        const int source = connection.source_fd(direction);
        io_uring_sqe* poll = context.sqe_for(connection, Op::plane_poll, direction);
        io_uring_prep_poll_add(poll, source, POLLIN | POLLRDHUP);
        poll->flags |= IOSQE_IO_LINK;
        io_uring_sqe* sqe = context.sqe_for(connection, Op::plane_splice_in, direction);
        io_uring_prep_splice(sqe, source, -1, connection.directions[direction].pipe_write.get(),
                             -1, kPipeBytes, kSpliceFlags);
    }

    static void splice_out(Connection& connection, std::uint8_t direction,
                           PlaneContext& context) {
        const daemon::Direction& flow = connection.directions[direction];
        const int sink = connection.sink_fd(direction);
        io_uring_sqe* poll = context.sqe_for(connection, Op::plane_poll, direction);
        io_uring_prep_poll_add(poll, sink, POLLOUT);
        poll->flags |= IOSQE_IO_LINK;
        io_uring_sqe* sqe = context.sqe_for(connection, Op::plane_splice_out, direction);
        io_uring_prep_splice(sqe, flow.pipe_read.get(), -1, sink, -1,
                             static_cast<unsigned>(flow.in_pipe), kSpliceFlags);
    }
};

}  // namespace

std::unique_ptr<DataPlane> make_splice_plane() { return std::make_unique<SplicePlane>(); }

}  // namespace splicer::plane
