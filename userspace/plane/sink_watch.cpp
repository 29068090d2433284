#include "plane/sink_watch.h"

#include <linux/socket.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>

#include "net/sockets.h"

namespace splicer::plane {

std::chrono::milliseconds watch_interval(std::chrono::seconds stall_timeout) {
    if (stall_timeout.count() == 0) {
        return std::chrono::seconds(1);
    }
    return std::clamp<std::chrono::milliseconds>(stall_timeout / 4, std::chrono::milliseconds(250),
                                                 std::chrono::seconds(1));
}

Result<SinkLook> look_at_sink(int fd, bool held) {
    tcp_info info{};
    socklen_t length = sizeof(info);
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) {
        return errno_error("TCP_INFO");
    }
    return SinkLook{.at = WatchClock::now(),
                    .acked = info.tcpi_bytes_acked,
                    .queued = info.tcpi_notsent_bytes > 0 || info.tcpi_unacked > 0,
                    .held = held};
}

void brake_source(Flow& connection, std::size_t direction, int bytes) {
    bool& braked = connection.plane->directions[direction].source_braked;
    if (braked) {
        return;
    }
    braked = true;
    ::setsockopt(connection.source_fd(direction), SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
}

void release_brake(Flow& connection, std::size_t direction) {
    connection.plane->directions[direction].braked_by_watch = false;
    bool& braked = connection.plane->directions[direction].source_braked;
    if (!braked) {
        return;
    }
    braked = false;
    const int source = connection.source_fd(direction);
    ::setsockopt(source, SOL_SOCKET, SO_RCVBUF, &kReleasedReceiveBufferBytes,
                 sizeof(kReleasedReceiveBufferBytes));
    // SO_RCVBUF locked the size; lifting the lock (Linux 5.14) gives the buffer back to TCP
    // autotuning, which grows it to tcp_rmem's maximum as it did before any brake.
    int locks = 0;
    socklen_t length = sizeof(locks);
    if (::getsockopt(source, SOL_SOCKET, SO_BUF_LOCK, &locks, &length) == 0) {
        locks &= ~SOCK_RCVBUF_LOCK;
        ::setsockopt(source, SOL_SOCKET, SO_BUF_LOCK, &locks, sizeof(locks));
    }
}

void resume_after_stop(Flow& connection, std::size_t direction) {
    // The sink's send buffer goes back to TCP autotuning (SO_BUF_LOCK, Linux 5.14): it grows
    // from the lowered size as the reader acknowledges.
    const int sink = connection.sink_fd(direction);
    int locks = 0;
    socklen_t length = sizeof(locks);
    if (::getsockopt(sink, SOL_SOCKET, SO_BUF_LOCK, &locks, &length) == 0) {
        locks &= ~SOCK_SNDBUF_LOCK;
        ::setsockopt(sink, SOL_SOCKET, SO_BUF_LOCK, &locks, sizeof(locks));
    }
    // Only a brake the stop put on: the backend's brake from the start (brake_backend) is a
    // plane's choice for every connection and stays until the fast-reader proof.
    Direction& flow = connection.plane->directions[direction];
    if (flow.braked_by_watch) {
        flow.braked_by_watch = false;
        release_brake(connection, direction);
    }
}

void arm_watch(Flow& connection, PlaneContext& context) {
    if (connection.plane->watch_armed) {
        return;
    }
    const auto interval = watch_interval(context.stall_timeout());
    connection.plane->watch_timer = {
        .tv_sec = static_cast<long long>(interval.count() / 1000),
        .tv_nsec = static_cast<long long>(interval.count() % 1000) * 1'000'000};
    io_uring_sqe* sqe = context.sqe_for(connection, PlaneOp::plane_watch, 0);
    io_uring_prep_timeout(sqe, &connection.plane->watch_timer, 0, 0);
    connection.plane->watch_armed = true;
}

bool on_watch(Flow& connection, PlaneContext& context, const std::array<bool, 2>& held) {
    bool waiting = false;
    for (std::size_t direction = 0; direction < 2; ++direction) {
        const int sink = connection.sink_fd(direction);
        auto look = look_at_sink(sink, held[direction]);
        if (!look) {
            continue;  // a socket in error: the plane's own operations report it
        }
        DrainWatch& drain = connection.plane->directions[direction].drain;
        switch (drain.tick(*look, context.stall_timeout())) {
            case SinkVerdict::idle: break;
            case SinkVerdict::stalled:
                context.abort_connection(connection, kEndStalled);
                return false;
            case SinkVerdict::lower: {
                // Locks the size: TCP autotuning no longer grows it for this reader. The
                // source feeding it is braked too: what it already received stays, and its
                // sender gets no more window than the brake leaves.
                ::setsockopt(sink, SOL_SOCKET, SO_SNDBUF, &kLoweredSendBufferBytes,
                             sizeof(kLoweredSendBufferBytes));
                Direction& flow = connection.plane->directions[direction];
                flow.braked_by_watch = !flow.source_braked;
                brake_source(connection, direction);
                context.reader_stops().stopped(connection.id, direction,
                                               net::bytes_unacknowledged(sink), held[direction]);
                waiting = true;
                break;
            }
            case SinkVerdict::resumed:
                resume_after_stop(connection, direction);
                context.reader_stops().resumed(
                    connection.id, direction,
                    std::chrono::duration_cast<std::chrono::milliseconds>(look->at -
                                                                          drain.stopped_since()));
                waiting = true;
                break;
            case SinkVerdict::moving:
            case SinkVerdict::waiting: waiting = true; break;
        }
    }
    if (waiting) {
        arm_watch(connection, context);
    }
    return true;
}

}  // namespace splicer::plane
