#pragma once
// A proxying connection's HTTP exchange (port 80, and TLS terminated on 443 for `terminate`
// rules), which owns its state and its transitions.
// One operation (and its linked timeout) is in flight at a time, so the phases
// (http/exchange_table.h) run strictly one after another: read the request head, connect,
// send the head and stream the body up, stream the response down, then read the next request
// (keep-alive) or close. How an operation that does not deliver ends the exchange is one
// table (http::ending_for). Memory per connection is the two fixed buffers (none while idle
// between requests) plus one head, whatever the body sizes.
//
// The exchange works on plaintext: each side reads and sends through its Transport
// (daemon/transport.h), plain on port 80, TLS on a terminated connection. It reaches the event
// loop only through HttpContext: submit an operation, close the connection, read the config in
// force, count, and hand over to the data plane after a 101.

#include <linux/time_types.h>
#include <liburing.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "daemon/backend_pool.h"
#include "daemon/connection.h"
#include "daemon/connection_handler.h"
#include "daemon/transport.h"
#include "http/exchange_table.h"
#include "http/message_parser.h"
#include "memory/buffer_pool.h"
#include "memory/rare_string.h"
#include "metrics/rule_series.h"
#include "net/address.h"
#include "splicer/config.h"
#include "splicer/daemon_counters.h"
#include "tls/upstream_context.h"
#include "uring/tag.h"

namespace splicer::daemon {

inline constexpr std::size_t kHttpBufferBytes = 64 * 1024;
// Response body bytes already read that are copied behind the response head, so that a small
// response goes to the client in one send (http_response.cpp); the rest streams as usual.
inline constexpr std::size_t kBodyWithHeadBytes = 16 * 1024;
// Buffers of kHttpBufferBytes each loop keeps for its exchanges beyond those lent (1 MiB),
// and up to how many while the number lent swings (memory/buffer_pool.h: 256 MiB).
inline constexpr std::size_t kHttpBuffersKept = 16;
inline constexpr std::size_t kHttpBuffersKeptAtMost = 4096;

// A buffer of bytes read from one side; [start, end) not yet framed and forwarded. Lent by
// the loop's pool (memory/buffer_pool.h) for a read and given back as soon as it is empty
// and nothing is being read into it: between requests, and while a TLS read waits on a
// silent client (HttpExchange::give_back_read_room). An idle keep-alive connection on a
// terminated TLS listener therefore holds no buffer. The pool is the exchange's context's,
// passed in rather than pointed at: two pointers fewer in every exchange, idle ones too.
struct HttpBuffer {
    HttpBuffer() = default;
    HttpBuffer(const HttpBuffer&) = delete;
    HttpBuffer& operator=(const HttpBuffer&) = delete;
    ~HttpBuffer() = default;  // the exchange gave the buffer back (HttpExchange's destructor)

    std::unique_ptr<std::byte[]> data;
    std::size_t start = 0;
    std::size_t end = 0;

    [[nodiscard]] char* chars() const { return reinterpret_cast<char*>(data.get()); }
    char* room(memory::BufferPool& pool) {
        if (!data) {
            // Not zero-filled: a recv writes what is read. Zeroing 64 KiB touched 16 fresh
            // pages per connection, ~40% of the daemon's CPU under a flood of new port 80
            // connections (perf, slowloris test under ASan).
            data = pool.take();
        }
        compact();
        return chars() + end;
    }
    void release_if_empty(memory::BufferPool& pool) {
        if (start == end) {
            give_back(pool);
        }
    }
    // Whatever is held goes back to `pool`, pending bytes or not.
    void give_back(memory::BufferPool& pool) {
        pool.give_back(std::move(data));
        data.reset();
        start = end = 0;
    }
    void discard() { start = end = 0; }

    [[nodiscard]] std::span<const char> pending() const {
        if (!data) {
            return {};
        }
        return {chars() + start, end - start};
    }
    // Moves what is pending to the front, so a recv always has room behind it.
    void compact() {
        if (start > 0 && data) {
            std::memmove(chars(), chars() + start, end - start);
            end -= start;
            start = 0;
        }
    }
};

// The HTTP exchange's io_uring operations (uring::Owner::handler). recv, send and close are
// its transports' (daemon/transport.h), on the socket of side `arg` (0 client, 1 backend).
enum class HttpOp : std::uint8_t {
    http_recv,     // recv from side `arg` (plaintext, or TLS records a transport decrypts)
    http_send,     // send to side `arg`
    http_connect,  // connect to the route's backend (linked to http_timeout)
    http_timeout,  // the timeout linked to an http op; the op itself reports -ECANCELED
    http_close,    // a transport's shutdown(SHUT_WR), or the NOP that reports a TLS answer
};
static_assert(uring::fits_in_handler_tag(HttpOp::http_close));
using HttpTag = uring::OwnedTag<HttpOp>;

// Which configuration section an exchange serves: `http` (port 80: config().http routes and
// limits, X-Forwarded-Proto http) or `https` (a connection a `terminate` rule matched:
// config().https routes and limits, X-Forwarded-Proto https).
enum class HttpSection : std::uint8_t { http, https };

// What an exchange asks of the event loop that runs it.
class HttpContext {
public:
    // An SQE whose completion comes back to the exchange of `connection`, tagged (op, arg).
    virtual io_uring_sqe* sqe_for(Connection& connection, HttpOp op, std::uint8_t arg) = 0;
    // Ends the connection (both sockets), logging `reason` as how it ended.
    virtual void close_connection(Connection& connection, std::string_view reason) = 0;
    // The same, for a client socket done both ways: our FIN is out and no operation waits on
    // it (the lingering read completed), so the close needs no shutdown first (one system
    // call per connection that would change nothing on the wire).
    virtual void close_after_linger(Connection& connection, std::string_view reason) = 0;
    // The configuration in force now (a reload replaces it between operations).
    [[nodiscard]] virtual const config::Config& config() const = 0;
    // A stop was asked for: no further request on any connection.
    [[nodiscard]] virtual bool stopping() const = 0;
    // The resolved backend of route `route` of `section` (config().http->routes or
    // config().https->routes).
    [[nodiscard]] virtual const net::SocketAddress& http_backend(HttpSection section,
                                                                 std::size_t route) const = 0;
    // The TLS client context of https route `route` (config().https->routes[route], an
    // https:// backend), or nullptr. The exchange keeps it for the backend connection's life:
    // a reload may replace the store meanwhile.
    [[nodiscard]] virtual std::shared_ptr<tls::UpstreamContext> upstream_tls(
        std::size_t route) const = 0;
    // The loop's idle backend connections (daemon/backend_pool.h).
    virtual BackendPool& backend_pool() = 0;
    // The loop's read buffers (kHttpBufferBytes each), lent while bytes wait.
    virtual memory::BufferPool& http_buffers() = 0;
    virtual metrics::RuleSeriesTable& rule_series() = 0;
    virtual DaemonCounters& live_counters() = 0;
    // A 101 went through and every byte read past it was flushed: replaces the exchange (the
    // connection's handler, destroyed here) by the data plane's. The caller returns at once.
    // `client` is the exchange's client transport: a plain one is just dropped (the plane
    // takes the socket); a TLS one cannot go to a splice plane (event_loop.cpp: its branch).
    virtual void upgrade_to_plane(Connection& connection, std::unique_ptr<Transport> client) = 0;

protected:
    ~HttpContext() = default;
};

// The handler of a proxying connection, owned by its Connection (connection.handler), which
// the slab never moves: the reference stays valid for the exchange's whole life.
class HttpExchange final : public ConnectionHandler,
                           private TransportUser,
                           private TransportRing {
public:
    // Makes the client side's transport over `socket` (a TlsTransport for a terminated
    // connection); nullptr: it could not be made (the exchange closes the connection).
    using ClientTransportMaker = std::function<std::unique_ptr<Transport>(
        const UniqueFd& socket, TransportRing& ring, TransportUser& user)>;

    // `section`'s exchange; without `make_client` its client side is plain (port 80).
    HttpExchange(Connection& connection, HttpContext& context,
                 HttpSection section = HttpSection::http,
                 const ClientTransportMaker& make_client = {});
    HttpExchange(const HttpExchange&) = delete;
    HttpExchange& operator=(const HttpExchange&) = delete;
    // Gives the read buffers back to the context's pool.
    ~HttpExchange() override;

    // The first request: its header clock runs from the accept.
    void start() override;
    // A completion of an http operation (HttpOp) this exchange submitted.
    void on_completion(std::uint8_t op, std::uint8_t arg, int result, std::uint32_t flags) override;

    [[nodiscard]] http::Phase phase() const { return phase_; }

private:
    using Side = http::Side;

    // I/O: every read and send goes through the side's transport, a connect is the
    // exchange's own; each with a linked timeout.
    void read_from(Side side, std::chrono::steady_clock::duration timeout);
    void send_to(Side side, std::span<const char> bytes, std::size_t consumed_on_send);
    HttpBuffer& buffer_from(Side side) {
        return side == Side::client ? from_client_ : current().from_backend;
    }
    // The side's transport; the backend's is made (plain) when there is none: next_request
    // drops it with the backend connection.
    Transport& transport(Side side);
    // The current request's and response's parsers, made when first asked for (a fresh
    // parser is at the start of a message).
    http::MessageParser& request_parser();
    http::MessageParser& response_parser();
    // Makes the backend side's transport a plain one over connection_.backend (kept when it
    // is one already).
    void plain_backend_io();
    // The section's settings in force now (a reload replaces them between operations).
    [[nodiscard]] const config::HttpLimits& limits() const;
    [[nodiscard]] const std::vector<config::HttpRoute>& routes() const;
    // Ends the connection after the client side's transport closed its direction cleanly
    // (TLS: a close_notify); plain: at once, as before the seam.
    void finish(std::string_view reason);

    // TransportRing, TransportUser: the transports' operations and outcomes.
    io_uring_sqe* transport_sqe(HttpOp op, Side side) override;
    void on_read(Side side, int result) override { on_recv(side, result); }
    bool give_back_read_room(Side side) override;
    std::span<char> read_room(Side side) override;
    void on_sent(Side side, int result) override;
    void on_closed(Side side, int result) override;

    // Completions (http_exchange.cpp).
    void on_recv(Side side, int result);
    void on_recv_end(Side side, int result);
    // Carries out the table's row for an operation that did not deliver; `detail` names the
    // answer's error where the row leaves it to the caller.
    void end_with(http::Outcome outcome, Side side, std::string_view detail = {});

    // The client side, one function per phase (http_request.cpp).
    void next_request();
    void frame_head();
    void route();
    // The upstream request head of the request being served (route(), and again for a retry).
    void compose_upstream_head();
    void connect_backend();
    void on_connect(int result);
    // A connected (or reused) backend: the request head goes up.
    void send_request_head();
    // The route's backend connection may be pooled: the key it goes under.
    [[nodiscard]] bool poolable() const { return current_ && current_->backend_key.has_value(); }
    // An idle pooled connection to the backend, made this exchange's; false: none.
    bool reuse_pooled_backend();
    // A reused connection failed before any byte of the response came: true when the request
    // was sent again on a new connection (once, and only when that is safe).
    bool retry_on_new_connection(std::string_view what);
    // The response was read to its end: the backend connection goes to the pool when the
    // exchange ended cleanly (http/backend_reuse.h), else it is closed.
    void release_backend();
    // The connect of an https:// backend is done: its TlsTransport, whose first send (the
    // request head) drives the handshake. False when it could not be made (answered 502).
    bool start_backend_tls();
    // The `routed` counters, once per request (routed_on_first_send_ says when; a retry on a
    // new connection is not counted again).
    void count_routed();
    // A backend send failed before its TLS handshake finished: 502 (504 timed out) naming
    // what TLS said; true when that was the case.
    bool backend_handshake_failed(int result);
    void pump_request();
    void answer(int status, std::string_view error, std::string composed = {});
    void linger();

    // The backend side (http_response.cpp).
    void pump_response();
    void response_head();
    void response_done();
    void upgrade();
    // The access line, once per answered request; counts its status.
    void log_access(std::string_view error = {});

    // What one request needs from its first byte to its answer. Made when first asked for
    // (current(): in practice the request's first byte, or a TLS record read while idle),
    // freed by next_request: an idle keep-alive connection holds none of it (its size is in
    // the static_assert below http_exchange.cpp's includes).
    struct CurrentRequest {
        // The response's bytes read from the backend: only a request has a response (the
        // buffer goes back to the pool before the request's state is freed: next_request,
        // and the exchange's destructor).
        HttpBuffer from_backend;
        // The request's parser from its first byte to the end of its response, the
        // response's while it is read (416 bytes each, with the heads they parsed): made when
        // first asked for (request_parser(), response_parser()), freed with the request, so
        // the next one starts on a fresh parser and an idle connection holds neither.
        std::unique_ptr<http::MessageParser> request_parser;
        std::unique_ptr<http::MessageParser> response_parser;
        // The route's TLS client context while its backend connection is being made (an
        // https:// backend); the backend's TlsTransport keeps it from then on.
        std::shared_ptr<tls::UpstreamContext> backend_tls;
        std::string backend_tls_name;  // its SNI and the name its certificate must carry
        // The send of a head splicer composed (the upstream request head, a response head,
        // an answer of its own) points into this string while it is in flight.
        std::string composed;
        std::optional<std::size_t> route;
        // Backend connection reuse (daemon/backend_pool.h): the pool key of the route's
        // backend (none: the route's connections are not pooled).
        std::optional<BackendKey> backend_key;
        std::uint64_t bytes_to_client = 0;
        std::string error;  // why splicer answered itself, for the access log
        std::string host;
        std::string method;
        std::string path;
        __kernel_timespec timeout{};  // the connect's; read by the kernel when it is submitted
        int status = 0;
        std::uint8_t proxy_protocol = 0;  // the route's, taken at the connect (a reload may follow)
        // A TLS backend counts as routed once its handshake is done (the first send that gets
        // through), not at the TCP connect: a failed handshake is a backend failure only.
        bool routed_on_first_send = false;
        bool routed_counted = false;      // this request's `routed` is counted
        bool request_done = false;        // its last byte went to the backend
        bool expect_continue = false;
        bool backend_contacted = false;   // a connect to the route's backend was tried
        bool backend_reused = false;      // this request went on a pooled connection
        bool retried = false;             // ... and was already sent again on a new one
        bool body_sent = false;           // a byte of the request body went up
        bool response_started = false;    // a byte of the response came
        bool request_aborted = false;     // the client's body was cut short
    };
    // The current request's state, made fresh when there is none.
    CurrentRequest& current() {
        if (!current_) {
            current_ = std::make_unique<CurrentRequest>();
        }
        return *current_;
    }

    Connection& connection_;
    HttpContext& context_;
    std::unique_ptr<Transport> client_io_;
    std::unique_ptr<Transport> backend_io_;  // none while no backend connection is in use
    std::unique_ptr<CurrentRequest> current_;  // none between requests (its parsers with it)
    HttpBuffer from_client_;
    // Set while the client transport closes before the end; empty on an idle connection, so
    // out of line (memory/rare_string.h).
    memory::RareString finish_reason_;

    // The send in flight: bytes in current().composed or in a buffer.
    std::span<const char> sending_;
    std::size_t consumed_on_send_ = 0;  // buffer bytes to mark forwarded once sent
    std::uint64_t lingered_ = 0;
    // The header clock of the request being read (from the accept for the first, from its
    // first byte or the previous answer for the next).
    std::chrono::steady_clock::time_point started_{};
    std::chrono::steady_clock::time_point head_deadline_{};
    HttpSection section_ = HttpSection::http;
    http::Phase phase_ = http::Phase::read_head;
    Side sending_to_ = Side::client;
    bool close_client_ = false;  // no further request on this connection
};

}  // namespace splicer::daemon
