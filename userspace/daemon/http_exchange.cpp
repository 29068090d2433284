// An exchange's I/O: every operation is a transport's read or send (daemon/transport.h) or
// the exchange's connect, each with a linked timeout, one at a time per connection; a
// timed-out operation completes with -ECANCELED. An operation that does not deliver ends the
// exchange as http::ending_for says.

#include "daemon/http_exchange.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "splicer/log.h"

namespace splicer::daemon {

using http::Outcome;
using http::Phase;
using Op = HttpOp;

// An idle keep-alive connection keeps its exchange (HttpExchange itself: transports, buffers
// without memory, clocks) and none of its CurrentRequest; 608 bytes when the request's state
// was part of it (session 29), 232 with the backend's read buffer and a pool pointer per
// buffer (session 30), 168 with the two parser pointers (session 31: they went into
// CurrentRequest, 152 bytes, a malloc chunk of 160 rather than 176). On LP64, where the
// idle-memory figures are measured.
static_assert(sizeof(void*) != 8 || sizeof(HttpExchange) <= 152,
              "an idle exchange grew: does the new member belong in CurrentRequest?");

namespace {

Outcome recv_outcome(int result) {
    return result == 0 ? Outcome::recv_eof
           : result == -ECANCELED ? Outcome::recv_timeout
                                  : Outcome::recv_error;
}

}  // namespace

HttpExchange::HttpExchange(Connection& connection, HttpContext& context, HttpSection section,
                           const ClientTransportMaker& make_client)
    : connection_(connection), context_(context), section_(section) {
    TransportRing& ring = *this;
    TransportUser& user = *this;
    if (make_client) {
        client_io_ = make_client(connection_.client, ring, user);
    } else {
        client_io_ = std::make_unique<PlainTransport>(connection_.client, Side::client, ring, user);
    }
    // The backend's transport is made when a request is routed (connect_backend).
}

HttpExchange::~HttpExchange() {
    from_client_.give_back(context_.http_buffers());
    if (current_) {
        current_->from_backend.give_back(context_.http_buffers());
    }
}

Transport& HttpExchange::transport(Side side) {
    if (side == Side::client) {
        return *client_io_;
    }
    if (!backend_io_) {
        plain_backend_io();
    }
    return *backend_io_;
}

http::MessageParser& HttpExchange::request_parser() {
    std::unique_ptr<http::MessageParser>& parser = current().request_parser;
    if (!parser) {
        parser = std::make_unique<http::MessageParser>(http::MessageParser::Kind::request);
    }
    return *parser;
}

http::MessageParser& HttpExchange::response_parser() {
    std::unique_ptr<http::MessageParser>& parser = current().response_parser;
    if (!parser) {
        parser = std::make_unique<http::MessageParser>(http::MessageParser::Kind::response);
    }
    return *parser;
}

void HttpExchange::plain_backend_io() {
    if (dynamic_cast<PlainTransport*>(backend_io_.get()) != nullptr) {
        return;  // idle between operations, over the same slot
    }
    TransportRing& ring = *this;  // private bases: converted here, not in make_unique
    TransportUser& user = *this;
    backend_io_ = std::make_unique<PlainTransport>(connection_.backend, Side::backend, ring, user);
}

const config::HttpLimits& HttpExchange::limits() const {
    return section_ == HttpSection::https ? context_.config().https->limits
                                          : context_.config().http->limits;
}

const std::vector<config::HttpRoute>& HttpExchange::routes() const {
    return section_ == HttpSection::https ? context_.config().https->routes
                                          : context_.config().http->routes;
}

io_uring_sqe* HttpExchange::transport_sqe(HttpOp op, Side side) {
    return context_.sqe_for(connection_, op, static_cast<std::uint8_t>(side));
}

void HttpExchange::read_from(Side side, std::chrono::steady_clock::duration timeout) {
    transport(side).read(read_room(side), timeout);
}

std::span<char> HttpExchange::read_room(Side side) {
    HttpBuffer& buffer = buffer_from(side);
    char* room = buffer.room(context_.http_buffers());
    return {room, kHttpBufferBytes - buffer.end};
}

bool HttpExchange::give_back_read_room(Side side) {
    // Only an empty buffer goes back: bytes already read and not yet framed (a pipelined
    // request's first part) keep theirs, and the room lies behind them.
    HttpBuffer& buffer = buffer_from(side);
    if (!buffer.pending().empty()) {
        return false;
    }
    buffer.release_if_empty(context_.http_buffers());
    return true;
}

void HttpExchange::send_to(Side side, std::span<const char> bytes,
                           std::size_t consumed_on_send) {
    sending_ = bytes;
    sending_to_ = side;
    consumed_on_send_ = consumed_on_send;
    // A peer that stops reading is given as long as an idle client or a slow backend.
    transport(side).send(bytes,
                         side == Side::client ? limits().idle_timeout : limits().backend_timeout);
}

void HttpExchange::finish(std::string_view reason) {
    if (!client_io_->closes_gracefully()) {
        context_.close_connection(connection_, reason);
        return;
    }
    finish_reason_ = std::string(reason);
    client_io_->close_write(limits().idle_timeout);
}

void HttpExchange::on_closed(Side /*side*/, int result) {
    if (!finish_reason_.empty() && result >= 0) {
        // Our close_notify is out: read (and drop) until the client's close_notify or FIN,
        // a short while at most, so that no unread byte turns our close into a reset that
        // could cut the response's last bytes (port 80's lingering close).
        phase_ = Phase::lingering;
        head_deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(2);
        read_from(Side::client, std::chrono::seconds(2));
        return;
    }
    if (!finish_reason_.empty()) {
        context_.close_connection(connection_, finish_reason_);
        return;
    }
    if (phase_ != Phase::lingering || result < 0) {
        context_.close_connection(connection_, "answered");
        return;
    }
    read_from(Side::client, head_deadline_ - std::chrono::steady_clock::now());
}

void HttpExchange::on_completion(std::uint8_t op, std::uint8_t arg, int result,
                                 std::uint32_t /*flags*/) {
    // Closing: what is still completing has no say.
    if (connection_.state != State::proxying) {
        return;
    }
    const HttpTag tag{static_cast<Op>(op), arg};
    const Side side = tag.arg == 0 ? Side::client : Side::backend;
    switch (tag.op) {
        case Op::http_recv:
        case Op::http_send:
        case Op::http_close: transport(side).on_completion(tag.op, result); break;
        case Op::http_connect: on_connect(result); break;
        default: break;  // the linked timeout: its operation reports -ECANCELED
    }
}

void HttpExchange::end_with(Outcome outcome, Side side, std::string_view detail) {
    const http::Ending ending = http::ending_for(phase_, side, outcome);
    if (const std::string_view why = transport(side).error(); !why.empty()) {
        // What TLS said went wrong (a handshake the client gave up, a bad record): the
        // table's reason alone would only say the read failed.
        log::info("tls_error", {{"conn", std::to_string(connection_.id)},
                                {"side", side == Side::client ? "client" : "backend"},
                                {"error", std::string(why)}});
    }
    if (side == Side::client && !client_io_->established()) {
        // The TLS handshake did not finish (timed out, failed, or the client left): no
        // answer can reach the client, so no 408 or 400; nginx closes the same way.
        context_.close_connection(connection_, outcome == Outcome::recv_timeout
                                                   ? "tls_handshake_timeout"
                                               : outcome == Outcome::recv_eof
                                                   ? "tls_handshake_eof"
                                                   : "tls_handshake_failed");
        return;
    }
    switch (ending.action) {
        case http::Action::close:
            if (phase_ == Phase::answering) {
                log_access(current().error);  // the answer was not delivered: its access line still is
            }
            context_.close_connection(connection_, ending.reason);
            return;
        case http::Action::answer:
            answer(ending.status != 0 ? ending.status : request_parser().error_status(),
                   ending.reason.empty() ? detail : ending.reason);
            return;
        case http::Action::relay_response:
            // Relay the backend's answer if it is there (502 if not), then close: the rest
            // of the client's body can no longer be framed.
            close_client_ = true;
            current().request_done = true;
            current().request_aborted = true;  // the backend connection can no longer be reused
            from_client_.discard();
            consumed_on_send_ = 0;
            phase_ = Phase::response;
            pump_response();
            return;
    }
}

void HttpExchange::on_sent(Side /*side*/, int result) {
    if (result <= 0) {
        if (backend_handshake_failed(result)) {
            return;
        }
        if (sending_to_ == Side::backend && result != -ECANCELED &&
            retry_on_new_connection("send: " + errno_text(result))) {
            return;
        }
        end_with(result == -ECANCELED ? Outcome::send_timeout : Outcome::send_error,
                 sending_to_);
        return;
    }
    if (current().routed_on_first_send && sending_to_ == Side::backend) {
        count_routed();
    }
    const auto sent = static_cast<std::size_t>(result);
    context_.live_counters()
        .bytes[static_cast<std::size_t>(PlaneLabel::http)]
              [sending_to_ == Side::client ? kBackendToClient : kClientToBackend] += sent;
    if (sending_to_ == Side::client) {
        current().bytes_to_client += sent;
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
            if (current().expect_continue) {
                current().expect_continue = false;  // the head is upstream: let the body come
                current().composed = "HTTP/1.1 100 Continue\r\n\r\n";
                send_to(Side::client, current().composed, 0);
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
        if (result <= 0 && !finish_reason_.empty()) {
            context_.close_after_linger(connection_, finish_reason_);  // the response was done
        } else if (result <= 0) {
            end_with(recv_outcome(result), side);
        } else if (lingered_ > kMaxLingerBytes || left.count() <= 0) {
            const std::string_view reason =
                finish_reason_.empty() ? std::string_view("answered") : finish_reason_.view();
            context_.close_connection(connection_, reason);
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
    if (side == Side::backend) {
        current().response_started = true;
    }
    switch (phase_) {
        case Phase::idle:
            // A keep-alive connection was idle: this request's header clock starts now.
            phase_ = Phase::read_head;
            started_ = std::chrono::steady_clock::now();
            head_deadline_ = started_ + limits().header_timeout;
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
        const http::Step step = response_parser().finish();
        if (step.event == http::Event::message_complete) {
            response_done();
            return;
        }
    }
    // A reused connection the backend closed (or reset) before answering: not the
    // request's fault. A timeout is a slow backend, not a stale connection: no retry.
    if (side == Side::backend && result != -ECANCELED &&
        retry_on_new_connection(result == 0 ? "recv: end of stream" : "recv: " + errno_text(result))) {
        return;
    }
    end_with(recv_outcome(result), side);
}

}  // namespace splicer::daemon
