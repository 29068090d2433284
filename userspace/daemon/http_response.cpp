// Port 80, backend side of an exchange: relay the response head (rewritten) and stream the
// body down; then the next request, a close, or after a 101 the data plane.

#include <cerrno>

#include "daemon/event_loop.h"
#include "daemon/http_exchange.h"
#include "http/head_rewrite.h"
#include "splicer/log.h"

namespace splicer::daemon {

void EventLoop::http_pump_response(Connection& connection) {
    HttpExchange& exchange = *connection.http;
    const http::Step step = exchange.response.feed(exchange.from_backend.pending());
    if (step.event == http::Event::error) {
        if (exchange.response_head_sent) {
            close_connection(connection, "backend_garbage");
        } else {
            http_answer(connection, 502, exchange.response.error_reason());
        }
        return;
    }
    if (step.event == http::Event::head_complete) {
        exchange.from_backend.start += step.consumed;
        http_response_head(connection);
        return;
    }
    if (step.consumed > 0) {
        http_send(connection, kClientSide, exchange.from_backend.pending().first(step.consumed),
                  step.consumed);
        return;
    }
    if (step.event == http::Event::message_complete) {
        http_response_done(connection);
        return;
    }
    http_read(connection, kBackendSide, config_->http->backend_timeout);
}

void EventLoop::http_response_head(Connection& connection) {
    HttpExchange& exchange = *connection.http;
    const http::MessageHead& head = exchange.response.head();
    if (head.status == 100) {
        // splicer answered the client's Expect itself (and did not forward it).
        http_pump_response(connection);
        return;
    }
    if (head.status == 101) {
        if (!exchange.request.head().upgrade) {
            http_answer(connection, 502, "101 without an upgrade request");
            return;
        }
        exchange.status = 101;
        exchange.phase = HttpPhase::upgrading;
        exchange.composed = http::client_response_head(head, false);
        http_send(connection, kClientSide, exchange.composed, 0);
        return;
    }
    if (head.status >= 200) {
        exchange.status = head.status;
        exchange.response_head_sent = true;
        // After a refused upgrade the client's next bytes may not be HTTP: close then.
        exchange.close_client = exchange.close_client || exchange.response.body_until_eof() ||
                                exchange.request.head().upgrade || stopping_;
    }
    exchange.composed = http::client_response_head(head, exchange.close_client);
    http_send(connection, kClientSide, exchange.composed, 0);
}

void EventLoop::http_response_done(Connection& connection) {
    HttpExchange& exchange = *connection.http;
    if (exchange.response.head().status < 200) {
        exchange.response.next_message();  // an interim 1xx: the final response follows
        exchange.response.set_no_body(exchange.method == "HEAD");
        http_pump_response(connection);
        return;
    }
    http_log(connection);
    if (exchange.close_client) {
        close_connection(connection, "done");
        return;
    }
    http_next_request(connection);
}

void EventLoop::http_upgrade(Connection& connection) {
    HttpExchange& exchange = *connection.http;
    // Bytes either side sent right behind the 101 / the request were read into userspace:
    // they go out first, then the kernel (or the plane) takes over.
    if (!exchange.from_backend.pending().empty()) {
        http_send(connection, kClientSide, exchange.from_backend.pending(),
                  exchange.from_backend.pending().size());
        return;
    }
    if (!exchange.from_client.pending().empty()) {
        http_send(connection, kBackendSide, exchange.from_client.pending(),
                  exchange.from_client.pending().size());
        return;
    }
    http_log(connection);
    connection.protocol = "http-upgrade";
    log_routed(connection);
    connection.http.reset();
    connection.state = State::spliced;
    plane_.start(connection, *this);
}

void EventLoop::http_log(const Connection& connection, std::string_view error) {
    const HttpExchange& exchange = *connection.http;
    if (exchange.status >= kFirstHttpStatus &&
        exchange.status < kFirstHttpStatus + static_cast<int>(kHttpStatusSlots)) {
        ++counters_.http_responses[static_cast<std::size_t>(exchange.status - kFirstHttpStatus)];
    }
    const auto duration = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - exchange.started);
    const bool routed = exchange.route.has_value();
    log::info("http", {{"conn", std::to_string(connection.id)},
                       {"client", net::to_string(connection.client_address)},
                       {"host", exchange.host},
                       {"method", exchange.method},
                       {"path", exchange.path},
                       {"status", std::to_string(exchange.status)},
                       {"bytes", std::to_string(exchange.bytes_to_client)},
                       {"route", routed ? std::to_string(*exchange.route) : "-"},
                       {"backend", exchange.backend_contacted
                                       ? net::to_string(connection.backend_address)
                                       : "-"},
                       {"duration_ms", std::to_string(duration.count())},
                       {"error", std::string(error)}});
}

}  // namespace splicer::daemon
