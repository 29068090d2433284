// The transport seam's shared part and the plain transport: port 80's recv and send exactly as
// before the seam (same operations, same linked timeouts, straight into the exchange's buffers).

#include "daemon/transport.h"

#include <liburing.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "daemon/http_exchange.h"

namespace splicer::daemon {

__kernel_timespec to_timespec(std::chrono::steady_clock::duration timeout) {
    const auto ns = std::max<std::int64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count(), 1'000'000);
    return {.tv_sec = ns / 1'000'000'000, .tv_nsec = ns % 1'000'000'000};
}

void Transport::link_timeout(std::chrono::steady_clock::duration timeout) {
    timeout_ = to_timespec(timeout);
    io_uring_prep_link_timeout(ring_.transport_sqe(HttpOp::http_timeout, side_), &timeout_, 0);
}

void PlainTransport::read(std::span<char> room, std::chrono::steady_clock::duration timeout) {
    io_uring_sqe* recv = ring_.transport_sqe(HttpOp::http_recv, side_);
    io_uring_prep_recv(recv, socket_.get(), room.data(), room.size(), 0);
    recv->flags |= IOSQE_IO_LINK;
    link_timeout(timeout);
}

void PlainTransport::send(std::span<const char> bytes,
                          std::chrono::steady_clock::duration timeout) {
    sending_ = bytes;
    send_timeout_ = timeout;
    if (last_send_short_) {
        // The last send filled the socket's buffer: this one (most often its rest) would
        // find no room either.
        send_waiting();
        return;
    }
    send_without_waiting_ = true;
    // io_uring completes a MSG_DONTWAIT send with -EAGAIN instead of waiting for room
    // (REQ_F_NOWAIT): it cannot outlast any timeout, so it needs none.
    io_uring_prep_send(ring_.transport_sqe(HttpOp::http_send, side_), socket_.get(), bytes.data(),
                       bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

void PlainTransport::send_waiting() {
    send_without_waiting_ = false;
    io_uring_sqe* send = ring_.transport_sqe(HttpOp::http_send, side_);
    io_uring_prep_send(send, socket_.get(), sending_.data(), sending_.size(), MSG_NOSIGNAL);
    send->flags |= IOSQE_IO_LINK;
    link_timeout(send_timeout_);
}

void PlainTransport::close_write(std::chrono::steady_clock::duration /*timeout*/) {
    // A shutdown does not wait on the peer: no timeout needed. Made here, not in the ring:
    // io_uring never runs IORING_OP_SHUTDOWN inline (it returns -EAGAIN to a non-blocking
    // issue), so each one went to an io-wq worker thread, a thread wake-up and switch per
    // closed connection. Done, it is reported through a NOP (result 0); failed, the ring's
    // shutdown is asked for after all, to report the error as before.
    if (::shutdown(socket_.get(), SHUT_WR) == 0) {
        io_uring_prep_nop(ring_.transport_sqe(HttpOp::http_close, side_));
        return;
    }
    io_uring_prep_shutdown(ring_.transport_sqe(HttpOp::http_close, side_), socket_.get(), SHUT_WR);
}

void PlainTransport::on_completion(HttpOp op, int result) {
    switch (op) {
        case HttpOp::http_recv:
            user_.on_read(side_, result);
            return;
        case HttpOp::http_send:
            if (send_without_waiting_ && result == -EAGAIN) {
                send_waiting();  // no room now: wait for it, under the send's timeout
                return;
            }
            send_without_waiting_ = false;
            last_send_short_ = result > 0 && static_cast<std::size_t>(result) < sending_.size();
            sending_ = {};
            user_.on_sent(side_, result);
            return;
        case HttpOp::http_close:
            user_.on_closed(side_, result);
            return;
        default:
            return;
    }
}

}  // namespace splicer::daemon
