// Port 80 I/O: every http operation is a recv, send or connect with a linked timeout, one at
// a time per connection; a timed-out operation completes with -ECANCELED.

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "daemon/event_loop.h"
#include "daemon/http_exchange.h"

namespace splicer::daemon {

using uring::Op;

void HttpExchangeDeleter::operator()(HttpExchange* exchange) const { delete exchange; }

namespace {

__kernel_timespec to_timespec(std::chrono::steady_clock::duration timeout) {
    // Never 0: a zero timeout would fire before the operation had a chance.
    const auto ns = std::max<std::int64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count(), 1'000'000);
    return {.tv_sec = ns / 1'000'000'000, .tv_nsec = ns % 1'000'000'000};
}

int fd_of(const Connection& connection, std::uint8_t side) {
    return side == kClientSide ? connection.client.get() : connection.backend.get();
}

}  // namespace

void EventLoop::http_read(Connection& connection, std::uint8_t side,
                          std::chrono::steady_clock::duration timeout) {
    HttpExchange& exchange = *connection.http;
    HttpBuffer& buffer = side == kClientSide ? exchange.from_client : exchange.from_backend;
    char* room = buffer.room();
    io_uring_sqe* recv = sqe_for(connection, Op::http_recv, side);
    io_uring_prep_recv(recv, fd_of(connection, side), room, kHttpBufferBytes - buffer.end, 0);
    recv->flags |= IOSQE_IO_LINK;
    exchange.timeout = to_timespec(timeout);
    io_uring_prep_link_timeout(sqe_for(connection, Op::http_timeout, side), &exchange.timeout, 0);
}

void EventLoop::http_send(Connection& connection, std::uint8_t side,
                          std::span<const char> bytes, std::size_t consumed_on_send) {
    HttpExchange& exchange = *connection.http;
    exchange.sending = bytes;
    exchange.sending_to = side;
    exchange.consumed_on_send = consumed_on_send;
    io_uring_sqe* send = sqe_for(connection, Op::http_send, side);
    io_uring_prep_send(send, fd_of(connection, side), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    send->flags |= IOSQE_IO_LINK;
    // A peer that stops reading is given as long as an idle client or a slow backend.
    const auto& http = *config_->http;
    exchange.timeout =
        to_timespec(side == kClientSide ? http.idle_timeout : http.backend_timeout);
    io_uring_prep_link_timeout(sqe_for(connection, Op::http_timeout, side), &exchange.timeout, 0);
}

void EventLoop::on_http_completion(Connection& connection, const uring::Tag& tag, int result) {
    // Closing (or already spliced after a 101): what is still completing has no say.
    if (connection.state != State::proxying || !connection.http) {
        return;
    }
    switch (tag.op) {
        case Op::http_recv: on_http_recv(connection, tag.arg, result); break;
        case Op::http_send: on_http_sent(connection, result); break;
        case Op::http_connect: on_http_connect(connection, result); break;
        default: break;  // the linked timeout: its operation reports -ECANCELED
    }
}

void EventLoop::on_http_sent(Connection& connection, int result) {
    HttpExchange& exchange = *connection.http;
    if (result <= 0) {
        if (exchange.phase == HttpPhase::answering) {
            http_log(connection, exchange.error);
        }
        if (exchange.sending_to == kBackendSide && exchange.phase == HttpPhase::request &&
            result != -ECANCELED) {
            // The backend stopped taking the request: it may have answered already (a 401 or
            // 413 before the body). Relay that answer if it is there (502 if not), then close:
            // the rest of the client's body can no longer be framed.
            exchange.close_client = true;
            exchange.request_done = true;
            exchange.from_client.start = exchange.from_client.end = 0;
            exchange.consumed_on_send = 0;
            exchange.phase = HttpPhase::response;
            http_pump_response(connection);
        } else if (exchange.sending_to == kBackendSide && exchange.phase == HttpPhase::request) {
            http_answer(connection, 504, "backend send timeout");
        } else {
            close_connection(connection, result == -ECANCELED ? "send_timeout" : "send_error");
        }
        return;
    }
    const auto sent = static_cast<std::size_t>(result);
    counters_.bytes[static_cast<std::size_t>(PlaneLabel::http)]
                   [exchange.sending_to == kClientSide ? kBackendToClient : kClientToBackend] +=
        sent;
    if (exchange.sending_to == kClientSide) {
        exchange.bytes_to_client += sent;
    }
    if (sent < exchange.sending.size()) {
        http_send(connection, exchange.sending_to, exchange.sending.subspan(sent),
                  exchange.consumed_on_send);
        return;
    }
    // The bytes came from the other side's buffer: they are forwarded now.
    HttpBuffer& source =
        exchange.sending_to == kClientSide ? exchange.from_backend : exchange.from_client;
    source.start += exchange.consumed_on_send;
    exchange.consumed_on_send = 0;
    exchange.sending = {};
    switch (exchange.phase) {
        case HttpPhase::request:
            if (exchange.expect_continue) {
                exchange.expect_continue = false;  // the head is upstream: let the body come
                exchange.composed = "HTTP/1.1 100 Continue\r\n\r\n";
                http_send(connection, kClientSide, exchange.composed, 0);
                return;
            }
            http_pump_request(connection);
            return;
        case HttpPhase::response: http_pump_response(connection); return;
        case HttpPhase::upgrading: http_upgrade(connection); return;
        case HttpPhase::answering: http_linger(connection); return;
        default: return;
    }
}

void EventLoop::on_http_recv(Connection& connection, std::uint8_t side, int result) {
    HttpExchange& exchange = *connection.http;
    if (exchange.phase == HttpPhase::lingering) {
        constexpr std::uint64_t kMaxLingerBytes = 64ULL << 20;
        exchange.from_client.start = exchange.from_client.end = 0;  // discarded
        exchange.lingered += result > 0 ? static_cast<std::uint64_t>(result) : 0;
        const auto left = exchange.head_deadline - std::chrono::steady_clock::now();
        if (result <= 0 || exchange.lingered > kMaxLingerBytes || left.count() <= 0) {
            close_connection(connection, "answered");
        } else {
            http_read(connection, kClientSide, left);
        }
        return;
    }
    if (result <= 0) {
        on_http_recv_end(connection, side, result);
        return;
    }
    HttpBuffer& buffer = side == kClientSide ? exchange.from_client : exchange.from_backend;
    buffer.end += static_cast<std::size_t>(result);
    switch (exchange.phase) {
        case HttpPhase::read_head:
            if (!exchange.request_seen) {
                // A keep-alive connection was idle: this request's header clock starts now.
                exchange.request_seen = true;
                exchange.started = std::chrono::steady_clock::now();
                exchange.head_deadline = exchange.started + config_->http->header_timeout;
            }
            http_frame_head(connection);
            return;
        case HttpPhase::request: http_pump_request(connection); return;
        case HttpPhase::response: http_pump_response(connection); return;
        default: return;
    }
}

void EventLoop::on_http_recv_end(Connection& connection, std::uint8_t side, int result) {
    HttpExchange& exchange = *connection.http;
    const bool timed_out = result == -ECANCELED;
    if (side == kClientSide) {
        if (exchange.phase == HttpPhase::read_head && !exchange.request_seen) {
            close_connection(connection, timed_out ? "idle" : "done");
        } else if (timed_out) {
            http_answer(connection, 408, exchange.phase == HttpPhase::read_head
                                             ? "header timeout"
                                             : "body timeout");
        } else {
            close_connection(connection, result == 0 ? "client_closed" : "client_error");
        }
        return;
    }
    if (result == 0) {
        const http::Step step = exchange.response.finish();
        if (step.event == http::Event::message_complete) {
            http_response_done(connection);
            return;
        }
    }
    if (exchange.response_head_sent) {
        close_connection(connection, timed_out ? "backend_timeout" : "backend_closed");
    } else if (timed_out) {
        http_answer(connection, 504, "backend response timeout");
    } else {
        http_answer(connection, 502, result == 0 ? "backend closed" : "backend recv failed");
    }
}

}  // namespace splicer::daemon
