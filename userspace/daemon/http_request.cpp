// Port 80, client side of an exchange: frame the request head, route it, answer what splicer
// answers itself, connect to the backend and stream the request up.

#include <sys/socket.h>

#include <cerrno>

#include "daemon/event_loop.h"
#include "daemon/http_exchange.h"
#include "daemon/proxy_header_send.h"
#include "http/canned_response.h"
#include "http/head_rewrite.h"
#include "http/route_match.h"
#include "net/sockets.h"
#include "net/transparent_bind.h"

namespace splicer::daemon {

using uring::Op;

void EventLoop::start_http(Connection& connection) {
    connection.state = State::proxying;
    connection.http.reset(new HttpExchange);
    HttpExchange& exchange = *connection.http;
    // The first request's header clock runs from the accept: a client that connects and
    // sends nothing (or trickles) gets 408 after header_timeout.
    exchange.request_seen = true;
    exchange.started = connection.accepted_at;
    exchange.head_deadline = exchange.started + config_->http->header_timeout;
    http_frame_head(connection);
}

void EventLoop::http_next_request(Connection& connection) {
    HttpExchange& exchange = *connection.http;
    connection.backend.reset();
    exchange.request.next_message();
    exchange.response.reset();
    exchange.from_backend.start = exchange.from_backend.end = 0;
    exchange.from_backend.release_if_empty();
    exchange.from_client.release_if_empty();
    exchange.phase = HttpPhase::read_head;
    exchange.route.reset();
    exchange.request_done = false;
    exchange.expect_continue = false;
    exchange.response_head_sent = false;
    exchange.backend_contacted = false;
    exchange.bytes_to_client = 0;
    exchange.status = 0;
    exchange.error.clear();
    // A pipelined request already buffered starts its header clock now; otherwise the
    // connection is idle until the next byte arrives.
    exchange.request_seen = !exchange.from_client.pending().empty();
    exchange.started = std::chrono::steady_clock::now();
    exchange.head_deadline = exchange.started + config_->http->header_timeout;
    http_frame_head(connection);
}

void EventLoop::http_frame_head(Connection& connection) {
    HttpExchange& exchange = *connection.http;
    const http::Step step = exchange.request.feed(exchange.from_client.pending());
    exchange.from_client.start += step.consumed;
    if (step.event == http::Event::error) {
        http_answer(connection, exchange.request.error_status(), exchange.request.error_reason());
        return;
    }
    if (step.event == http::Event::head_complete) {
        http_route(connection);
        return;
    }
    const auto now = std::chrono::steady_clock::now();
    http_read(connection, kClientSide,
              exchange.request_seen ? exchange.head_deadline - now
                                    : std::chrono::steady_clock::duration(
                                          config_->http->idle_timeout));
}

void EventLoop::http_route(Connection& connection) {
    HttpExchange& exchange = *connection.http;
    const http::MessageHead& head = exchange.request.head();
    const config::HttpConfig& http = *config_->http;
    // One validated authority: the absolute-form target's, else Host's (the parser refused
    // anything else). It routes, goes up as Host (unless set_host) and X-Forwarded-Host, and
    // names the host of a redirect.
    exchange.host = std::string(http::request_authority(head));
    exchange.method = head.method;
    exchange.path = http::target_path(head.target);
    exchange.close_client = !head.keep_alive || stopping_;
    exchange.route = http::match_route(http.routes, exchange.host, head.target);
    if (!exchange.route) {
        http_answer(connection, 404, "no route");
        return;
    }
    const config::HttpRoute& route = http.routes[*exchange.route];
    const std::uint64_t max_body = route.max_body_size.value_or(http.max_body_size);
    // Refused before a byte of the body is read (curl waits for it with Expect).
    if (head.content_length && *head.content_length > max_body) {
        http_answer(connection, 413, "Content-Length over max_body_size");
        return;
    }
    exchange.request.set_max_body(max_body);
    if (route.redirect_https && !http::is_acme_challenge(exchange.path)) {
        exchange.status = 301;
        http_answer(connection, 301, {}, http::redirect_to_https(exchange.host, http::origin_form(head.target)));
        return;
    }
    const http::Header* expect = head.find("expect");
    exchange.expect_continue = expect != nullptr &&
                               http::equals_ignoring_case(expect->value, "100-continue") &&
                               (head.chunked || head.content_length.value_or(0) > 0);
    exchange.composed = http::upstream_request_head(
        head, {.client_address = net::ip_to_string(connection.client_address),
               .set_host = route.set_host,
               .drop_expect = expect != nullptr});
    exchange.response.set_no_body(head.method == "HEAD");
    http_connect(connection);
}

void EventLoop::http_connect(Connection& connection) {
    HttpExchange& exchange = *connection.http;
    exchange.phase = HttpPhase::connecting;
    exchange.backend_contacted = true;
    connection.backend_address = http_backends_[*exchange.route];
    // Kept by the connection: a reload during the connect may renumber the routes.
    connection.series = rule_series_.for_route(*exchange.route);
    exchange.proxy_protocol = config_->http->routes[*exchange.route].proxy_protocol;
    const bool transparent = config_->http->routes[*exchange.route].transparent;
    connection.transparent = transparent;
    auto socket = net::stream_socket_for(connection.backend_address);
    if (!socket) {
        http_answer(connection, 502, socket.error().message);
        return;
    }
    if (transparent) {
        // From the client's own address and port (README "Transparent mode").
        if (Result<void> bound = net::bind_to_client(socket->get(), connection.client_address);
            !bound) {
            ++counters_.backend_failures;
            rule_series_.count_backend_failure(connection.series);
            http_answer(connection, 502, bound.error().message);
            return;
        }
    }
    connection.backend = std::move(socket).value();
    io_uring_sqe* connect = sqe_for(connection, Op::http_connect, kBackendSide);
    io_uring_prep_connect(connect, connection.backend.get(), connection.backend_address.get(),
                          connection.backend_address.length);
    connect->flags |= IOSQE_IO_LINK;
    connection.connect_timeout.tv_sec = config_->connect_timeout.count();
    connection.connect_timeout.tv_nsec = 0;
    io_uring_prep_link_timeout(sqe_for(connection, Op::http_timeout, kBackendSide),
                               &connection.connect_timeout, 0);
}

void EventLoop::on_http_connect(Connection& connection, int result) {
    HttpExchange& exchange = *connection.http;
    if (result < 0) {
        ++counters_.backend_failures;
        rule_series_.count_backend_failure(connection.series);
        // The linked timeout cancels the connect: -ECANCELED means it took too long.
        if (connection.transparent) {
            http_answer(connection, result == -ECANCELED ? 504 : 502,
                        "backend connect: " + net::transparent_connect_error(result));
        } else if (result == -ECANCELED) {
            http_answer(connection, 504, "backend connect timeout");
        } else {
            http_answer(connection, 502, "backend connect: " + errno_text(result));
        }
        return;
    }
    if (exchange.proxy_protocol != 0) {
        // A new backend connection per request: the header goes first on each, ahead of the
        // upstream head and sent with it (http_send takes care of a short send).
        Result<std::string> header = proxy_header_for(
            static_cast<net::ProxyVersion>(exchange.proxy_protocol), connection.client_address,
            connection.client.get(), connection.reached_address);
        if (!header) {
            ++counters_.backend_failures;
            http_answer(connection, 502, header.error().message);
            return;
        }
        exchange.composed.insert(0, header.value());
    }
    ++counters_.routed;
    rule_series_.count_routed(connection.series, PlaneLabel::http);
    exchange.phase = HttpPhase::request;
    http_send(connection, kBackendSide, exchange.composed, 0);
}

void EventLoop::http_pump_request(Connection& connection) {
    HttpExchange& exchange = *connection.http;
    if (!exchange.request_done) {
        const http::Step step = exchange.request.feed(exchange.from_client.pending());
        if (step.event == http::Event::error) {
            http_answer(connection, exchange.request.error_status(),
                        exchange.request.error_reason());
            return;
        }
        exchange.request_done = step.event == http::Event::message_complete;
        if (step.consumed > 0) {
            // Body bytes go up as they were framed, chunk framing included.
            http_send(connection, kBackendSide, exchange.from_client.pending().first(step.consumed),
                      step.consumed);
            return;
        }
        if (!exchange.request_done) {
            http_read(connection, kClientSide, config_->http->idle_timeout);
            return;
        }
    }
    exchange.phase = HttpPhase::response;
    http_pump_response(connection);
}

void EventLoop::http_answer(Connection& connection, int status, std::string_view error,
                            std::string answer) {
    HttpExchange& exchange = *connection.http;
    exchange.status = status;
    exchange.error = std::string(error);  // logged once the answer is sent (or failed)
    exchange.phase = HttpPhase::answering;
    connection.backend.reset();
    exchange.composed = answer.empty() ? http::error_response(status) : std::move(answer);
    exchange.from_backend.start = exchange.from_backend.end = 0;
    http_send(connection, kClientSide, exchange.composed, 0);
}

void EventLoop::http_linger(Connection& connection) {
    // Closing with unread bytes queued would make the kernel send a reset, which can destroy
    // the answer before the client reads it: shut our side, read and drop what the client
    // still sends for a short while (nginx's lingering close), then close.
    HttpExchange& exchange = *connection.http;
    http_log(connection, exchange.error);
    ::shutdown(connection.client.get(), SHUT_WR);
    exchange.phase = HttpPhase::lingering;
    exchange.head_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    http_read(connection, kClientSide, std::chrono::seconds(2));
}

}  // namespace splicer::daemon
