// The backend side of an exchange: relay the response head (rewritten) and stream the
// body down; then the next request, a close, or after a 101 the data plane.

#include <algorithm>
#include <cerrno>

#include "daemon/http_exchange.h"
#include "daemon/tls_transport.h"
#include "http/backend_reuse.h"
#include "http/head_rewrite.h"
#include "splicer/log.h"

namespace splicer::daemon {

using http::Outcome;
using http::Phase;

void HttpExchange::pump_response() {
    http::MessageParser& response = response_parser();
    const http::Step step = response.feed(current().from_backend.pending());
    if (step.event == http::Event::error) {
        end_with(Outcome::malformed, Side::backend, response.error_reason());
        return;
    }
    if (step.event == http::Event::head_complete) {
        current().from_backend.start += step.consumed;
        response_head();
        return;
    }
    if (step.consumed > 0) {
        send_to(Side::client, current().from_backend.pending().first(step.consumed), step.consumed);
        return;
    }
    if (step.event == http::Event::message_complete) {
        response_done();
        return;
    }
    read_from(Side::backend, limits().backend_timeout);
}

void HttpExchange::response_head() {
    http::MessageParser& response = response_parser();
    const http::MessageHead& head = response.head();
    if (head.status == 100) {
        // splicer answered the client's Expect itself (and did not forward it).
        pump_response();
        return;
    }
    if (head.status == 101) {
        if (!request_parser().head().upgrade) {
            answer(502, "101 without an upgrade request");
            return;
        }
        if (!backend_io_->spliceable()) {
            // The backend's side is TLS records: no plane can relay it (a TLS relay covers
            // the client's side only). Refused before anything reaches the client.
            answer(502, "upgrade from an https:// backend is not supported");
            return;
        }
        current().status = 101;
        phase_ = Phase::upgrading;
        current().composed = http::client_response_head(head, false);
        send_to(Side::client, current().composed, 0);
        return;
    }
    if (head.status < 200) {
        current().composed = http::client_response_head(head, close_client_);  // an interim 1xx
        send_to(Side::client, current().composed, 0);
        return;
    }
    current().status = head.status;
    phase_ = Phase::relaying;
    // After a refused upgrade the client's next bytes may not be HTTP: close then.
    close_client_ = close_client_ || response.body_until_eof() ||
                    request_parser().head().upgrade || context_.stopping();
    current().composed = http::client_response_head(head, close_client_);
    // The body bytes read with the head (all of a small response, most often) go out in the
    // same send: one send, one segment and one wake-up of the client instead of two. Framed
    // here as pump_response would frame them next; marked forwarded once sent (on_sent).
    // A body the parser refuses is left to pump_response, after the head, as before.
    const std::span<const char> waiting = current().from_backend.pending();
    std::size_t body_with_head = 0;
    if (!waiting.empty()) {
        const http::Step step =
            response.feed(waiting.first(std::min(waiting.size(), kBodyWithHeadBytes)));
        if (step.event != http::Event::error) {
            body_with_head = step.consumed;
            current().composed.append(waiting.data(), body_with_head);
        }
    }
    send_to(Side::client, current().composed, body_with_head);
}

void HttpExchange::response_done() {
    http::MessageParser& response = response_parser();
    if (response.head().status < 200) {
        response.next_message();  // an interim 1xx: the final response follows
        response.set_no_body(current().method == "HEAD");
        pump_response();
        return;
    }
    release_backend();
    log_access();
    if (close_client_) {
        finish("done");
        return;
    }
    next_request();
}

void HttpExchange::release_backend() {
    if (!poolable() || !connection_.backend || context_.stopping()) {
        return;
    }
    const http::MessageParser& response = response_parser();
    const http::ExchangeEnd end{
        .request_complete = current().request_done,
        .request_aborted = current().request_aborted,
        .response_complete = true,
        .framed_by_eof = response.body_until_eof(),
        .backend_keep_alive = response.head().keep_alive,
        .unread_bytes = !current().from_backend.pending().empty()};
    if (!http::why_not_reusable(end).empty()) {
        return;  // closed with the rest of the exchange (next_request, or the connection's end)
    }
    IdleBackend idle;
    if (auto* tls = dynamic_cast<TlsTransport*>(backend_io_.get()); tls != nullptr) {
        TlsRelayStart state = tls->release_for_relay();
        if (!state.client_cipher.empty()) {
            return;  // TLS records past the response: not an idle connection
        }
        idle.session = std::move(state.session);
        idle.context_owner = std::move(state.context_owner);
    }
    idle.socket = std::move(connection_.backend);
    // A TLS transport held the session now pooled: a plain one over the (empty) slot
    // replaces it.
    plain_backend_io();
    context_.backend_pool().put(*current().backend_key, std::move(idle), limits().keepalive_connections,
                                limits().keepalive_timeout);
}

void HttpExchange::upgrade() {
    // Bytes either side sent right behind the 101 / the request were read into userspace:
    // they go out first, then the kernel (or the plane) takes over.
    if (!current().from_backend.pending().empty()) {
        const std::span<const char> waiting = current().from_backend.pending();
        send_to(Side::client, waiting, waiting.size());
        return;
    }
    if (!from_client_.pending().empty()) {
        send_to(Side::backend, from_client_.pending(), from_client_.pending().size());
        return;
    }
    log_access();
    connection_.protocol = "http-upgrade";
    // Destroys this exchange: nothing may follow.
    context_.upgrade_to_plane(connection_, std::move(client_io_));
}

void HttpExchange::log_access(std::string_view error) {
    if (current().status >= kFirstHttpStatus &&
        current().status < kFirstHttpStatus + static_cast<int>(kHttpStatusSlots)) {
        ++context_.live_counters()
              .http_responses[static_cast<std::size_t>(current().status - kFirstHttpStatus)];
    }
    const auto duration = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started_);
    const bool routed = current().route.has_value();
    log::info("http", {{"conn", std::to_string(connection_.id)},
                       {"client", net::to_string(connection_.client_address)},
                       {"host", current().host},
                       {"method", current().method},
                       {"path", current().path},
                       {"status", std::to_string(current().status)},
                       {"bytes", std::to_string(current().bytes_to_client)},
                       {"route", routed ? std::to_string(*current().route) : "-"},
                       {"backend", current().backend_contacted
                                       ? net::to_string(connection_.backend_address)
                                       : "-"},
                       {"duration_ms", std::to_string(duration.count())},
                       {"error", std::string(error)},
                       {"tls", section_ == HttpSection::https ? "1" : "0"}});
}

}  // namespace splicer::daemon
