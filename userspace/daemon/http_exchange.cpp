// Port 80 I/O: every http operation is a recv, send or connect with a linked timeout, one at
// a time per connection; a timed-out operation completes with -ECANCELED. An operation that
// does not deliver ends the exchange as http::ending_for says.

#include "daemon/http_exchange.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace splicer::daemon {

using http::Outcome;
using http::Phase;
using Op = HttpOp;

namespace {

__kernel_timespec to_timespec(std::chrono::steady_clock::duration timeout) {
    // Never 0: a zero timeout would fire before the operation had a chance.
    const auto ns = std::max<std::int64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count(), 1'000'000);
    return {.tv_sec = ns / 1'000'000'000, .tv_nsec = ns % 1'000'000'000};
}

std::uint8_t tag_arg(http::Side side) { return static_cast<std::uint8_t>(side); }

Outcome recv_outcome(int result) {
    return result == 0 ? Outcome::recv_eof
           : result == -ECANCELED ? Outcome::recv_timeout
                                  : Outcome::recv_error;
}

}  // namespace

int HttpExchange::fd_of(Side side) const {
    return side == Side::client ? connection_.client.get() : connection_.backend.get();
}

void HttpExchange::read_from(Side side, std::chrono::steady_clock::duration timeout) {
    HttpBuffer& buffer = buffer_from(side);
    char* room = buffer.room();
    io_uring_sqe* recv = context_.sqe_for(connection_, Op::http_recv, tag_arg(side));
    io_uring_prep_recv(recv, fd_of(side), room, kHttpBufferBytes - buffer.end, 0);
    recv->flags |= IOSQE_IO_LINK;
    timeout_ = to_timespec(timeout);
    io_uring_prep_link_timeout(context_.sqe_for(connection_, Op::http_timeout, tag_arg(side)),
                               &timeout_, 0);
}

void HttpExchange::send_to(Side side, std::span<const char> bytes,
                           std::size_t consumed_on_send) {
    sending_ = bytes;
    sending_to_ = side;
    consumed_on_send_ = consumed_on_send;
    io_uring_sqe* send = context_.sqe_for(connection_, Op::http_send, tag_arg(side));
    io_uring_prep_send(send, fd_of(side), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    send->flags |= IOSQE_IO_LINK;
    // A peer that stops reading is given as long as an idle client or a slow backend.
    const auto& http = *context_.config().http;
    timeout_ = to_timespec(side == Side::client ? http.idle_timeout : http.backend_timeout);
    io_uring_prep_link_timeout(context_.sqe_for(connection_, Op::http_timeout, tag_arg(side)),
                               &timeout_, 0);
}

void HttpExchange::on_completion(std::uint8_t op, std::uint8_t arg, int result,
                                 std::uint32_t /*flags*/) {
    // Closing: what is still completing has no say.
    if (connection_.state != State::proxying) {
        return;
    }
    const HttpTag tag{static_cast<Op>(op), arg};
    switch (tag.op) {
        case Op::http_recv: on_recv(tag.arg == 0 ? Side::client : Side::backend, result); break;
        case Op::http_send: on_sent(result); break;
        case Op::http_connect: on_connect(result); break;
        default: break;  // the linked timeout: its operation reports -ECANCELED
    }
}

void HttpExchange::end_with(Outcome outcome, Side side, std::string_view detail) {
    const http::Ending ending = http::ending_for(phase_, side, outcome);
    switch (ending.action) {
        case http::Action::close:
            if (phase_ == Phase::answering) {
                log_access(error_);  // the answer was not delivered: its access line still is
            }
            context_.close_connection(connection_, ending.reason);
            return;
        case http::Action::answer:
            answer(ending.status != 0 ? ending.status : request_.error_status(),
                   ending.reason.empty() ? detail : ending.reason);
            return;
        case http::Action::relay_response:
            // Relay the backend's answer if it is there (502 if not), then close: the rest
            // of the client's body can no longer be framed.
            close_client_ = true;
            request_done_ = true;
            from_client_.discard();
            consumed_on_send_ = 0;
            phase_ = Phase::response;
            pump_response();
            return;
    }
}

void HttpExchange::on_sent(int result) {
    if (result <= 0) {
        end_with(result == -ECANCELED ? Outcome::send_timeout : Outcome::send_error,
                 sending_to_);
        return;
    }
    const auto sent = static_cast<std::size_t>(result);
    context_.live_counters()
        .bytes[static_cast<std::size_t>(PlaneLabel::http)]
              [sending_to_ == Side::client ? kBackendToClient : kClientToBackend] += sent;
    if (sending_to_ == Side::client) {
        bytes_to_client_ += sent;
    }
    if (sent < sending_.size()) {
        send_to(sending_to_, sending_.subspan(sent), consumed_on_send_);
        return;
    }
    // The bytes came from the other side's buffer: they are forwarded now.
    buffer_from(sending_to_ == Side::client ? Side::backend : Side::client).start +=
        consumed_on_send_;
    consumed_on_send_ = 0;
    sending_ = {};
    switch (phase_) {
        case Phase::request:
            if (expect_continue_) {
                expect_continue_ = false;  // the head is upstream: let the body come
                composed_ = "HTTP/1.1 100 Continue\r\n\r\n";
                send_to(Side::client, composed_, 0);
                return;
            }
            pump_request();
            return;
        case Phase::response:
        case Phase::relaying: pump_response(); return;
        case Phase::upgrading: upgrade(); return;
        case Phase::answering: linger(); return;
        default: return;
    }
}

void HttpExchange::on_recv(Side side, int result) {
    if (phase_ == Phase::lingering) {
        constexpr std::uint64_t kMaxLingerBytes = 64ULL << 20;
        from_client_.discard();
        lingered_ += result > 0 ? static_cast<std::uint64_t>(result) : 0;
        const auto left = head_deadline_ - std::chrono::steady_clock::now();
        if (result <= 0) {
            end_with(recv_outcome(result), side);
        } else if (lingered_ > kMaxLingerBytes || left.count() <= 0) {
            context_.close_connection(connection_, "answered");
        } else {
            read_from(Side::client, left);
        }
        return;
    }
    if (result <= 0) {
        on_recv_end(side, result);
        return;
    }
    buffer_from(side).end += static_cast<std::size_t>(result);
    switch (phase_) {
        case Phase::idle:
            // A keep-alive connection was idle: this request's header clock starts now.
            phase_ = Phase::read_head;
            started_ = std::chrono::steady_clock::now();
            head_deadline_ = started_ + context_.config().http->header_timeout;
            frame_head();
            return;
        case Phase::read_head: frame_head(); return;
        case Phase::request: pump_request(); return;
        case Phase::response:
        case Phase::relaying: pump_response(); return;
        default: return;
    }
}

void HttpExchange::on_recv_end(Side side, int result) {
    if (side == Side::backend && result == 0) {
        // A response framed by the end of the stream is complete, not cut.
        const http::Step step = response_.finish();
        if (step.event == http::Event::message_complete) {
            response_done();
            return;
        }
    }
    end_with(recv_outcome(result), side);
}

}  // namespace splicer::daemon
