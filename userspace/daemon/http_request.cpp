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

// Empties `text` and frees its buffer. `text = std::string()` does not: libstdc++ copies a
// short (local) source into the buffer `text` already has and keeps it, so each idle
// keep-alive connection kept its last response head (~500 bytes measured, heaptrack).
void release(std::string& text) {
    std::string().swap(text);
}
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
    // Both parsers go with the request they served (the next one starts on a fresh parser).
    request_.reset();
    response_.reset();
    from_backend_.discard();
    from_backend_.release_if_empty();
    from_client_.release_if_empty();
    route_.reset();
    backend_key_.reset();
    backend_reused_ = false;
    retried_ = false;
    routed_counted_ = false;
    body_sent_ = false;
    response_started_ = false;
    request_aborted_ = false;
    request_done_ = false;
    expect_continue_ = false;
    backend_contacted_ = false;
    bytes_to_client_ = 0;
    status_ = 0;
    // The strings of the request just served go with their memory: a keep-alive client may
    // stay silent for idle_timeout, and clear() would keep each one's capacity that long.
    release(error_);
    release(composed_);
    release(host_);
    release(method_);
    release(path_);
    // A pipelined request already buffered starts its header clock now; otherwise the
    // connection is idle until the next byte arrives.
    phase_ = from_client_.pending().empty() ? Phase::idle : Phase::read_head;
    started_ = std::chrono::steady_clock::now();
    head_deadline_ = started_ + limits().header_timeout;
    frame_head();
}

void HttpExchange::frame_head() {
    // No parser before the request's first byte: an idle keep-alive connection holds none.
    if (request_ || !from_client_.pending().empty()) {
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
    host_ = std::string(http::request_authority(head));
    method_ = head.method;
    path_ = http::target_path(head.target);
    close_client_ = !head.keep_alive || context_.stopping();
    route_ = http::match_route(routes, host_, head.target);
    if (!route_) {
        answer(404, "no route");
        return;
    }
    const config::HttpRoute& route = routes[*route_];
    const std::uint64_t max_body = route.max_body_size.value_or(limits().max_body_size);
    // Refused before a byte of the body is read (curl waits for it with Expect).
    if (head.content_length && *head.content_length > max_body) {
        answer(413, "Content-Length over max_body_size");
        return;
    }
    request_parser().set_max_body(max_body);
    if (route.redirect_https && !http::is_acme_challenge(path_)) {
        answer(301, {}, http::redirect_to_https(host_, http::origin_form(head.target)));
        return;
    }
    const http::Header* expect = head.find("expect");
    expect_continue_ = expect != nullptr &&
                       http::equals_ignoring_case(expect->value, "100-continue") &&
                       (head.chunked || head.content_length.value_or(0) > 0);
    response_parser().set_no_body(head.method == "HEAD");
    connect_backend();
}

void HttpExchange::compose_upstream_head() {
    const http::MessageHead& head = request_parser().head();
    const config::HttpRoute& route = routes()[*route_];
    composed_ = http::upstream_request_head(
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
    backend_contacted_ = true;
    const config::HttpRoute& route = routes()[*route_];
    connection_.backend_address = context_.http_backend(section_, *route_);
    // Kept by the connection: a reload during the connect may renumber the routes.
    connection_.series = section_ == HttpSection::https
                             ? context_.rule_series().for_https_route(*route_)
                             : context_.rule_series().for_route(*route_);
    // Plain unless the route's backend is https:// (start_backend_tls, once connected). A
    // plain transport names the connection's backend slot, not a socket; it is made here
    // per request (next_request drops it, so an idle connection holds none).
    plain_backend_io();
    backend_tls_.reset();
    if (route.backend_scheme == config::BackendScheme::https) {
        backend_tls_ = section_ == HttpSection::https ? context_.upstream_tls(*route_) : nullptr;
        // SNI and the name the certificate must carry: the Host the backend is sent
        // (set_host, else the request's, without port), or with neither its address.
        backend_tls_name_ = http::host_without_port(route.set_host ? *route.set_host : host_);
        if (backend_tls_name_.empty()) {
            backend_tls_name_ = net::ip_to_string(connection_.backend_address);
        }
        if (!backend_tls_) {
            // The store is built with the config it serves: this is a bug, not a peer.
            ++context_.live_counters().backend_failures;
            context_.rule_series().count_backend_failure(connection_.series);
            answer(502, "backend TLS: no client context for the route");
            return;
        }
    }
    proxy_protocol_ = route.proxy_protocol;
    connection_.transparent = route.transparent;
    // Pooled unless the connection is the client's own: a PROXY header names one client, a
    // transparent connection leaves from the client's address.
    backend_key_.reset();
    if (limits().keepalive_connections > 0 && proxy_protocol_ == 0 && !connection_.transparent) {
        backend_key_ = BackendKey{
            .address = connection_.backend_address,
            .tls_context = backend_tls_.get(),
            .tls_name = backend_tls_ ? backend_tls_name_ : std::string()};
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
    timeout_.tv_sec = context_.config().connect_timeout.count();
    timeout_.tv_nsec = 0;
    io_uring_prep_link_timeout(context_.sqe_for(connection_, Op::http_timeout, kBackendArg),
                               &timeout_, 0);
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
    if (proxy_protocol_ != 0) {
        // A new backend connection per request: the header goes first on each, ahead of the
        // upstream head and sent with it (send_to takes care of a short send).
        Result<std::string> header = proxy_header_for(
            static_cast<net::ProxyVersion>(proxy_protocol_), connection_.client_address,
            connection_.client.get(), connection_.reached_address);
        if (!header) {
            ++context_.live_counters().backend_failures;
            answer(502, header.error().message);
            return;
        }
        if (backend_tls_) {
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
            composed_.insert(0, header.value());
        }
    }
    routed_on_first_send_ = backend_tls_ != nullptr;
    if (backend_tls_ && !start_backend_tls()) {
        return;
    }
    if (!routed_on_first_send_) {
        count_routed();
    }
    send_request_head();
}

void HttpExchange::send_request_head() {
    phase_ = Phase::request;
    send_to(Side::backend, composed_, 0);
}

void HttpExchange::count_routed() {
    // A plain backend once connected, a TLS one once its handshake is done (on_sent): as a
    // refused connect, a refused handshake counts as a backend failure and nothing else.
    routed_on_first_send_ = false;
    if (routed_counted_) {
        return;  // a retry on a new connection is the same request, routed once
    }
    routed_counted_ = true;
    ++context_.live_counters().routed;
    context_.rule_series().count_routed(connection_.series, PlaneLabel::http);
}

bool HttpExchange::reuse_pooled_backend() {
    backend_reused_ = false;
    if (!poolable() || retried_) {
        return false;  // a retry goes on a new connection, as nginx's does
    }
    // A request that could not be sent again on a new connection (retry_on_new_connection:
    // a body, or not idempotent) never goes on a connection the backend has already closed:
    // one the pool does not watch yet is checked first.
    const http::MessageHead& head = request_parser().head();
    const bool has_body = head.chunked || head.content_length.value_or(0) > 0;
    std::optional<IdleBackend> idle =
        context_.backend_pool().take(*backend_key_, has_body || !http::is_idempotent(method_));
    if (!idle) {
        return false;
    }
    ++context_.live_counters().backend_pool_hits;
    backend_reused_ = true;
    connection_.backend = std::move(idle->socket);
    if (idle->session) {
        TransportRing& ring = *this;
        TransportUser& user = *this;
        backend_io_ = std::make_unique<TlsTransport>(connection_.backend, Side::backend, ring,
                                                     user, std::move(idle->context_owner),
                                                     std::move(*idle->session));
        backend_tls_.reset();  // the session's transport keeps its context now
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
    const bool safe = http::is_idempotent(method_) || (!request_done_ && !body_sent_);
    if (!backend_reused_ || retried_ || response_started_ || body_sent_ || !safe) {
        return false;
    }
    ++context_.live_counters().backend_pool_retries;
    log::info("backend_retry", {{"conn", std::to_string(connection_.id)},
                                {"backend", net::to_string(connection_.backend_address)},
                                {"error", std::string(what)}});
    retried_ = true;
    backend_reused_ = false;
    // The old connection's operation has completed; its linked timeout names only the tag.
    connection_.backend.reset();
    response_.reset();  // a fresh parser for the new connection's response
    response_parser().set_no_body(method_ == "HEAD");
    from_backend_.discard();
    consumed_on_send_ = 0;
    // expect_continue_ stays: still set, the client has not had its 100 Continue yet.
    connect_backend();
    return true;
}

bool HttpExchange::start_backend_tls() {
    auto session = tls::Session::create_client(*backend_tls_, backend_tls_name_);
    if (!session) {
        ++context_.live_counters().backend_failures;
        context_.rule_series().count_backend_failure(connection_.series);
        answer(502, "backend TLS: " + session.error().message);
        return false;
    }
    TransportRing& ring = *this;
    TransportUser& user = *this;
    backend_io_ = std::make_unique<TlsTransport>(connection_.backend, Side::backend, ring, user,
                                                 std::move(backend_tls_),
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
    if (!request_done_) {
        const http::Step step = request_parser().feed(from_client_.pending());
        if (step.event == http::Event::error) {
            end_with(Outcome::malformed, Side::client, request_parser().error_reason());
            return;
        }
        request_done_ = step.event == http::Event::message_complete;
        if (step.consumed > 0) {
            body_sent_ = true;
            // Body bytes go up as they were framed, chunk framing included.
            send_to(Side::backend, from_client_.pending().first(step.consumed), step.consumed);
            return;
        }
        if (!request_done_) {
            read_from(Side::client, limits().idle_timeout);
            return;
        }
    }
    phase_ = Phase::response;
    pump_response();
}

void HttpExchange::answer(int status, std::string_view error, std::string composed) {
    status_ = status;
    error_ = std::string(error);  // logged once the answer is sent (or failed)
    phase_ = Phase::answering;
    connection_.backend.reset();
    composed_ = composed.empty() ? http::error_response(status) : std::move(composed);
    from_backend_.discard();
    send_to(Side::client, composed_, 0);
}

void HttpExchange::linger() {
    // Closing with unread bytes queued would make the kernel send a reset, which can destroy
    // the answer before the client reads it: shut our side, read and drop what the client
    // still sends for a short while (nginx's lingering close), then close.
    // On TLS the close_notify goes out first (the transport's close_write); the read then
    // goes on in on_closed.
    log_access(error_);
    phase_ = Phase::lingering;
    head_deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    client_io_->close_write(std::chrono::seconds(2));
}

}  // namespace splicer::daemon
