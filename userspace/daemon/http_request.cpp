// The client side of an exchange: frame the request head, route it, answer what splicer
// answers itself, connect to the backend and stream the request up.

#include <sys/socket.h>

#include <cerrno>

#include "daemon/http_exchange.h"
#include "daemon/proxy_header_send.h"
#include "daemon/tls_transport.h"
#include "http/backend_reuse.h"
#include "http/canned_response.h"
#include "http/head_rewrite.h"
#include "http/route_match.h"
#include "net/sockets.h"
#include "net/transparent_bind.h"
#include "splicer/log.h"

namespace splicer::daemon {

using http::Outcome;
using http::Phase;
using Op = HttpOp;

namespace {
// The tag argument of a backend operation (the side's number).
constexpr auto kBackendArg = static_cast<std::uint8_t>(http::Side::backend);

}  // namespace

void HttpExchange::start() {
    // The first request's header clock runs from the accept: a client that connects and
    // sends nothing (or trickles) gets 408 after header_timeout.
    // On a terminated connection the same clock bounds the TLS handshake: the first read
    // drives it.
    phase_ = Phase::read_head;
    started_ = connection_.accepted_at;
    head_deadline_ = started_ + limits().header_timeout;
    if (!client_io_) {
        context_.close_connection(connection_, "tls_session_failed");
        return;
    }
    frame_head();
}

void HttpExchange::next_request() {
    connection_.backend.reset();
    // Its transport goes with it (nothing is in flight on it now): a TLS one not pooled kept
    // its whole SSL until the next request replaced it, a plain one 88 bytes.
    backend_io_.reset();
    if (current_) {
        current_->from_backend.give_back(context_.http_buffers());  // the response is done
    }
    from_client_.release_if_empty(context_.http_buffers());
    // The request's own state (route, backend key, the strings it parsed and composed, both
    // parsers: the next request starts on a fresh one) goes with it, memory and all: a
    // keep-alive client may stay silent for idle_timeout.
    current_.reset();
    // A pipelined request already buffered starts its header clock now; otherwise the
    // connection is idle until the next byte arrives.
    phase_ = from_client_.pending().empty() ? Phase::idle : Phase::read_head;
    started_ = std::chrono::steady_clock::now();
    head_deadline_ = started_ + limits().header_timeout;
    frame_head();
}

void HttpExchange::frame_head() {
    // No parser before the request's first byte: an idle keep-alive connection holds none.
    if ((current_ && current_->request_parser) || !from_client_.pending().empty()) {
        http::MessageParser& request = request_parser();
        const http::Step step = request.feed(from_client_.pending());
        from_client_.start += step.consumed;
        if (step.event == http::Event::error) {
            end_with(Outcome::malformed, Side::client, request.error_reason());
            return;
        }
        if (step.event == http::Event::head_complete) {
            route();
            return;
        }
    }
    const auto now = std::chrono::steady_clock::now();
    read_from(Side::client, phase_ == Phase::read_head
                                ? head_deadline_ - now
                                : std::chrono::steady_clock::duration(limits().idle_timeout));
}

void HttpExchange::route() {
    const http::MessageHead& head = request_parser().head();
    const std::vector<config::HttpRoute>& routes = this->routes();
    // One validated authority: the absolute-form target's, else Host's (the parser refused
    // anything else). It routes, goes up as Host (unless set_host) and X-Forwarded-Host, and
    // names the host of a redirect.
    current().host = std::string(http::request_authority(head));
    current().method = head.method;
    current().path = http::target_path(head.target);
    close_client_ = !head.keep_alive || context_.stopping();
    current().route = http::match_route(routes, current().host, head.target);
    if (!current().route) {
        answer(404, "no route");
        return;
    }
    const config::HttpRoute& route = routes[*current().route];
    const std::uint64_t max_body = route.max_body_size.value_or(limits().max_body_size);
    // Refused before a byte of the body is read (curl waits for it with Expect).
    if (head.content_length && *head.content_length > max_body) {
        answer(413, "Content-Length over max_body_size");
        return;
    }
    request_parser().set_max_body(max_body);
    if (route.redirect_https && !http::is_acme_challenge(current().path)) {
        answer(301, {}, http::redirect_to_https(current().host, http::origin_form(head.target)));
        return;
    }
    const http::Header* expect = head.find("expect");
    current().expect_continue = expect != nullptr &&
                       http::equals_ignoring_case(expect->value, "100-continue") &&
                       (head.chunked || head.content_length.value_or(0) > 0);
    response_parser().set_no_body(head.method == "HEAD");
    connect_backend();
}

void HttpExchange::compose_upstream_head() {
    const http::MessageHead& head = request_parser().head();
    const config::HttpRoute& route = routes()[*current().route];
    current().composed = http::upstream_request_head(
        head, {.client_address = net::ip_to_string(connection_.client_address),
               .set_host = route.set_host,
               .drop_expect = head.find("expect") != nullptr,
               .forwarded_proto = section_ == HttpSection::https ? "https" : "http",
               // The client's own Connection: close is hop-by-hop: it ends the client's
               // connection after this response, not the pooled backend's.
               .keep_alive = poolable() && !head.upgrade});
}

void HttpExchange::connect_backend() {
    phase_ = Phase::connecting;
    current().backend_contacted = true;
    const config::HttpRoute& route = routes()[*current().route];
    connection_.backend_address = context_.http_backend(section_, *current().route);
    // Kept by the connection: a reload during the connect may renumber the routes.
    connection_.series = section_ == HttpSection::https
                             ? context_.rule_series().for_https_route(*current().route)
                             : context_.rule_series().for_route(*current().route);
    // Plain unless the route's backend is https:// (start_backend_tls, once connected). A
    // plain transport names the connection's backend slot, not a socket; it is made here
    // per request (next_request drops it, so an idle connection holds none).
    plain_backend_io();
    current().backend_tls.reset();
    if (route.backend_scheme == config::BackendScheme::https) {
        current().backend_tls = section_ == HttpSection::https ? context_.upstream_tls(*current().route) : nullptr;
        // SNI and the name the certificate must carry: the Host the backend is sent
        // (set_host, else the request's, without port), or with neither its address.
        current().backend_tls_name = http::host_without_port(route.set_host ? *route.set_host : current().host);
        if (current().backend_tls_name.empty()) {
            current().backend_tls_name = net::ip_to_string(connection_.backend_address);
        }
        if (!current().backend_tls) {
            // The store is built with the config it serves: this is a bug, not a peer.
            ++context_.live_counters().backend_failures;
            context_.rule_series().count_backend_failure(connection_.series);
            answer(502, "backend TLS: no client context for the route");
            return;
        }
    }
    current().proxy_protocol = route.proxy_protocol;
    connection_.transparent = route.transparent;
    // Pooled unless the connection is the client's own: a PROXY header names one client, a
    // transparent connection leaves from the client's address.
    current().backend_key.reset();
    if (limits().keepalive_connections > 0 && current().proxy_protocol == 0 && !connection_.transparent) {
        current().backend_key = BackendKey{
            .address = connection_.backend_address,
            .tls_context = current().backend_tls.get(),
            .tls_name = current().backend_tls ? current().backend_tls_name : std::string()};
    }
    compose_upstream_head();
    if (reuse_pooled_backend()) {
        return;
    }
    if (poolable()) {
        ++context_.live_counters().backend_pool_misses;
    }
    auto socket = net::stream_socket_for(connection_.backend_address);
    if (!socket) {
        answer(502, socket.error().message);
        return;
    }
    if (connection_.transparent) {
        // From the client's own address and port (README "Transparent mode").
        if (Result<void> bound = net::bind_to_client(socket->get(), connection_.client_address);
            !bound) {
            ++context_.live_counters().backend_failures;
            context_.rule_series().count_backend_failure(connection_.series);
            answer(502, bound.error().message);
            return;
        }
    }
    connection_.backend = std::move(socket).value();
    io_uring_sqe* connect = context_.sqe_for(connection_, Op::http_connect, kBackendArg);
    io_uring_prep_connect(connect, connection_.backend.get(), connection_.backend_address.get(),
                          connection_.backend_address.length);
    connect->flags |= IOSQE_IO_LINK;
    current().timeout.tv_sec = context_.config().connect_timeout.count();
    current().timeout.tv_nsec = 0;
    io_uring_prep_link_timeout(context_.sqe_for(connection_, Op::http_timeout, kBackendArg),
                               &current().timeout, 0);
}

void HttpExchange::on_connect(int result) {
    if (result < 0) {
        ++context_.live_counters().backend_failures;
        context_.rule_series().count_backend_failure(connection_.series);
        // The linked timeout cancels the connect: -ECANCELED means it took too long.
        const bool timed_out = result == -ECANCELED;
        if (connection_.transparent) {
            // The row's status, with what the kernel refused about the client's address.
            const http::Ending ending = http::ending_for(
                phase_, Side::backend,
                timed_out ? Outcome::connect_timeout : Outcome::connect_error);
            answer(ending.status, "backend connect: " + net::transparent_connect_error(result));
            return;
        }
        end_with(timed_out ? Outcome::connect_timeout : Outcome::connect_error, Side::backend,
                 "backend connect: " + errno_text(result));
        return;
    }
    if (current().proxy_protocol != 0) {
        // A new backend connection per request: the header goes first on each, ahead of the
        // upstream head and sent with it (send_to takes care of a short send).
        Result<std::string> header = proxy_header_for(
            static_cast<net::ProxyVersion>(current().proxy_protocol), connection_.client_address,
            connection_.client.get(), connection_.reached_address());
        if (!header) {
            ++context_.live_counters().backend_failures;
            answer(502, header.error().message);
            return;
        }
        if (current().backend_tls) {
            // Before the TLS handshake, in the clear (nginx's `listen ... ssl proxy_protocol`
            // reads it so). A fresh connection's empty send buffer takes its at most 232
            // bytes whole; a short send is refused rather than waited for.
            const ssize_t sent = ::send(connection_.backend.get(), header->data(),
                                        header->size(), MSG_DONTWAIT | MSG_NOSIGNAL);
            if (sent != static_cast<ssize_t>(header->size())) {
                ++context_.live_counters().backend_failures;
                context_.rule_series().count_backend_failure(connection_.series);
                answer(502, "backend PROXY header: " +
                                (sent < 0 ? errno_text(-errno) : std::string("short send")));
                return;
            }
        } else {
            current().composed.insert(0, header.value());
        }
    }
    current().routed_on_first_send = current().backend_tls != nullptr;
    if (current().backend_tls && !start_backend_tls()) {
        return;
    }
    if (!current().routed_on_first_send) {
        count_routed();
    }
    send_request_head();
}

void HttpExchange::send_request_head() {
    phase_ = Phase::request;
    send_to(Side::backend, current().composed, 0);
}

void HttpExchange::count_routed() {
    // A plain backend once connected, a TLS one once its handshake is done (on_sent): as a
    // refused connect, a refused handshake counts as a backend failure and nothing else.
    current().routed_on_first_send = false;
    if (current().routed_counted) {
        return;  // a retry on a new connection is the same request, routed once
    }
    current().routed_counted = true;
    ++context_.live_counters().routed;
    context_.rule_series().count_routed(connection_.series, PlaneLabel::http);
}

bool HttpExchange::reuse_pooled_backend() {
    current().backend_reused = false;
    if (!poolable() || current().retried) {
        return false;  // a retry goes on a new connection, as nginx's does
    }
    // A request that could not be sent again on a new connection (retry_on_new_connection:
    // a body, or not idempotent) never goes on a connection the backend has already closed:
    // the pool checks it first (its watch may not have reported yet).
    const http::MessageHead& head = request_parser().head();
    const bool has_body = head.chunked || head.content_length.value_or(0) > 0;
    std::optional<IdleBackend> idle =
        context_.backend_pool().take(*current().backend_key, has_body || !http::is_idempotent(current().method));
    if (!idle) {
        return false;
    }
    ++context_.live_counters().backend_pool_hits;
    current().backend_reused = true;
    connection_.backend = std::move(idle->socket);
    if (idle->session) {
        TransportRing& ring = *this;
        TransportUser& user = *this;
        backend_io_ = std::make_unique<TlsTransport>(connection_.backend, Side::backend, ring,
                                                     user, std::move(idle->context_owner),
                                                     std::move(*idle->session));
        current().backend_tls.reset();  // the session's transport keeps its context now
    }
    count_routed();
    send_request_head();
    return true;
}

bool HttpExchange::retry_on_new_connection(std::string_view what) {
    // nginx's proxy_next_upstream for a keepalive connection: the backend closed it (or it
    // broke) while idle, before it read this request; sent again, once, on a new connection,
    // when sending it twice cannot do twice what the client asked once: the method is
    // idempotent, or the request was not all sent.
    const bool safe = http::is_idempotent(current().method) || (!current().request_done && !current().body_sent);
    if (!current().backend_reused || current().retried || current().response_started || current().body_sent || !safe) {
        return false;
    }
    ++context_.live_counters().backend_pool_retries;
    log::info("backend_retry", {{"conn", std::to_string(connection_.id)},
                                {"backend", net::to_string(connection_.backend_address)},
                                {"error", std::string(what)}});
    current().retried = true;
    current().backend_reused = false;
    // The old connection's operation has completed; its linked timeout names only the tag.
    connection_.backend.reset();
    current().response_parser.reset();  // a fresh parser for the new connection's response
    response_parser().set_no_body(current().method == "HEAD");
    current().from_backend.discard();
    consumed_on_send_ = 0;
    // current().expect_continue stays: still set, the client has not had its 100 Continue yet.
    connect_backend();
    return true;
}

bool HttpExchange::start_backend_tls() {
    auto session = tls::Session::create_client(*current().backend_tls, current().backend_tls_name);
    if (!session) {
        ++context_.live_counters().backend_failures;
        context_.rule_series().count_backend_failure(connection_.series);
        answer(502, "backend TLS: " + session.error().message);
        return false;
    }
    TransportRing& ring = *this;
    TransportUser& user = *this;
    backend_io_ = std::make_unique<TlsTransport>(connection_.backend, Side::backend, ring, user,
                                                 std::move(current().backend_tls),
                                                 std::move(session).value());
    return true;
}

bool HttpExchange::backend_handshake_failed(int result) {
    if (sending_to_ != Side::backend || backend_io_->established()) {
        return false;
    }
    ++context_.live_counters().backend_failures;
    context_.rule_series().count_backend_failure(connection_.series);
    if (result == -ECANCELED) {
        answer(504, "backend TLS handshake timeout");
        return true;
    }
    // "certificate: unable to get local issuer certificate" (tls::Session names a refused
    // certificate so) or OpenSSL's reason for any other failure.
    const std::string_view why = backend_io_->error();
    answer(502, why.starts_with("certificate: ") ? "backend " + std::string(why)
                : why.empty()                    ? "backend TLS: " + errno_text(result)
                                                 : "backend TLS: " + std::string(why));
    return true;
}

void HttpExchange::pump_request() {
    if (!current().request_done) {
        const http::Step step = request_parser().feed(from_client_.pending());
        if (step.event == http::Event::error) {
            end_with(Outcome::malformed, Side::client, request_parser().error_reason());
            return;
        }
        current().request_done = step.event == http::Event::message_complete;
        if (step.consumed > 0) {
            current().body_sent = true;
            // Body bytes go up as they were framed, chunk framing included.
            send_to(Side::backend, from_client_.pending().first(step.consumed), step.consumed);
            return;
        }
        if (!current().request_done) {
            read_from(Side::client, limits().idle_timeout);
            return;
        }
    }
    phase_ = Phase::response;
    pump_response();
}

void HttpExchange::answer(int status, std::string_view error, std::string composed) {
    current().status = status;
    current().error = std::string(error);  // logged once the answer is sent (or failed)
    phase_ = Phase::answering;
    connection_.backend.reset();
    current().composed = composed.empty() ? http::error_response(status) : std::move(composed);
    current().from_backend.discard();
    send_to(Side::client, current().composed, 0);
}

void HttpExchange::linger() {
    // Closing with unread bytes queued would make the kernel send a reset, which can destroy
    // the answer before the client reads it: shut our side, read and drop what the client
    // still sends for a short while (nginx's lingering close), then close.
    // On TLS the close_notify goes out first (the transport's close_write); the read then
    // goes on in on_closed.
    log_access(current().error);
    phase_ = Phase::lingering;
    head_deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    client_io_->close_write(std::chrono::seconds(2));
}

}  // namespace splicer::daemon
