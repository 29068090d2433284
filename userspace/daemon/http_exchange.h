#pragma once
// Port 80: a proxying connection's HTTP exchange, which owns its state and its transitions.
// One operation (and its linked timeout) is in flight at a time, so the phases
// (http/exchange_table.h) run strictly one after another: read the request head, connect,
// send the head and stream the body up, stream the response down, then read the next request
// (keep-alive) or close. How an operation that does not deliver ends the exchange is one
// table (http::ending_for). Memory per connection is the two fixed buffers (none while idle
// between requests) plus one head, whatever the body sizes.
//
// The exchange reaches the event loop only through HttpContext: submit an operation, close
// the connection, read the config in force, count, and hand over to the data plane after a 101.

#include <linux/time_types.h>
#include <liburing.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "daemon/connection.h"
#include "daemon/connection_handler.h"
#include "http/exchange_table.h"
#include "http/message_parser.h"
#include "metrics/rule_series.h"
#include "net/address.h"
#include "splicer/config.h"
#include "splicer/daemon_counters.h"
#include "uring/tag.h"

namespace splicer::daemon {

inline constexpr std::size_t kHttpBufferBytes = 64 * 1024;

// A fixed buffer of bytes read from one side; [start, end) not yet framed and forwarded.
// Allocated for a recv and released between requests, so an idle keep-alive connection
// holds no buffer.
struct HttpBuffer {
    std::unique_ptr<char[]> data;
    std::size_t start = 0;
    std::size_t end = 0;

    char* room() {
        if (!data) {
            // Not zero-filled: a recv writes what is read. Zeroing 64 KiB touched 16 fresh
            // pages per connection, ~40% of the daemon's CPU under a flood of new port 80
            // connections (perf, slowloris test under ASan).
            data = std::make_unique_for_overwrite<char[]>(kHttpBufferBytes);
        }
        compact();
        return data.get() + end;
    }
    void release_if_empty() {
        if (start == end) {
            data.reset();
            start = end = 0;
        }
    }
    void discard() { start = end = 0; }

    [[nodiscard]] std::span<const char> pending() const {
        if (!data) {
            return {};
        }
        return {data.get() + start, end - start};
    }
    // Moves what is pending to the front, so a recv always has room behind it.
    void compact() {
        if (start > 0 && data) {
            std::memmove(data.get(), data.get() + start, end - start);
            end -= start;
            start = 0;
        }
    }
};

// The HTTP exchange's io_uring operations (uring::Owner::handler).
enum class HttpOp : std::uint8_t {
    http_recv,     // recv from side `arg` (0 client, 1 backend) into its buffer
    http_send,     // send to side `arg`
    http_connect,  // connect to the route's backend (linked to http_timeout)
    http_timeout,  // the timeout linked to an http op; the op itself reports -ECANCELED
};
static_assert(uring::fits_in_handler_tag(HttpOp::http_timeout));
using HttpTag = uring::OwnedTag<HttpOp>;

// What an exchange asks of the event loop that runs it.
class HttpContext {
public:
    // An SQE whose completion comes back to the exchange of `connection`, tagged (op, arg).
    virtual io_uring_sqe* sqe_for(Connection& connection, HttpOp op, std::uint8_t arg) = 0;
    // Ends the connection (both sockets), logging `reason` as how it ended.
    virtual void close_connection(Connection& connection, std::string_view reason) = 0;
    // The configuration in force now (a reload replaces it between operations).
    [[nodiscard]] virtual const config::Config& config() const = 0;
    // A stop was asked for: no further request on any connection.
    [[nodiscard]] virtual bool stopping() const = 0;
    // The resolved backend of config().http->routes[route].
    [[nodiscard]] virtual const net::SocketAddress& http_backend(std::size_t route) const = 0;
    virtual metrics::RuleSeriesTable& rule_series() = 0;
    virtual DaemonCounters& live_counters() = 0;
    // A 101 went through and every byte read past it was flushed: replaces the exchange (the
    // connection's handler, destroyed here) by the data plane's. The caller returns at once.
    virtual void upgrade_to_plane(Connection& connection) = 0;

protected:
    ~HttpContext() = default;
};

// The handler of a proxying connection, owned by its Connection (connection.handler), which
// the slab never moves: the reference stays valid for the exchange's whole life.
class HttpExchange final : public ConnectionHandler {
public:
    HttpExchange(Connection& connection, HttpContext& context)
        : connection_(connection), context_(context) {}

    // The first request: its header clock runs from the accept.
    void start() override;
    // A completion of an http operation (HttpOp) this exchange submitted.
    void on_completion(std::uint8_t op, std::uint8_t arg, int result, std::uint32_t flags) override;

    [[nodiscard]] http::Phase phase() const { return phase_; }

private:
    using Side = http::Side;

    // I/O: every operation is a recv, send or connect with a linked timeout.
    void read_from(Side side, std::chrono::steady_clock::duration timeout);
    void send_to(Side side, std::span<const char> bytes, std::size_t consumed_on_send);
    HttpBuffer& buffer_from(Side side) {
        return side == Side::client ? from_client_ : from_backend_;
    }
    [[nodiscard]] int fd_of(Side side) const;

    // Completions (http_exchange.cpp).
    void on_recv(Side side, int result);
    void on_recv_end(Side side, int result);
    void on_sent(int result);
    // Carries out the table's row for an operation that did not deliver; `detail` names the
    // answer's error where the row leaves it to the caller.
    void end_with(http::Outcome outcome, Side side, std::string_view detail = {});

    // The client side, one function per phase (http_request.cpp).
    void next_request();
    void frame_head();
    void route();
    void connect_backend();
    void on_connect(int result);
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

    Connection& connection_;
    HttpContext& context_;

    http::Phase phase_ = http::Phase::read_head;
    http::MessageParser request_{http::MessageParser::Kind::request};
    http::MessageParser response_{http::MessageParser::Kind::response};
    HttpBuffer from_client_;
    HttpBuffer from_backend_;

    // The send in flight: bytes in `composed_` or in a buffer.
    std::string composed_;
    std::span<const char> sending_;
    Side sending_to_ = Side::client;
    std::size_t consumed_on_send_ = 0;  // buffer bytes to mark forwarded once sent

    // the request being served
    std::optional<std::size_t> route_;
    std::uint8_t proxy_protocol_ = 0;  // the route's, taken at the connect (a reload may follow)
    std::chrono::steady_clock::time_point started_{};
    std::chrono::steady_clock::time_point head_deadline_{};
    bool request_done_ = false;  // its last byte went to the backend
    bool expect_continue_ = false;
    bool close_client_ = false;  // no further request on this connection
    bool backend_contacted_ = false;  // a connect to the route's backend was tried
    std::uint64_t bytes_to_client_ = 0;
    std::uint64_t lingered_ = 0;
    int status_ = 0;
    std::string error_;  // why splicer answered itself, for the access log
    std::string host_;
    std::string method_;
    std::string path_;

    __kernel_timespec timeout_{};  // read by the kernel when the linked timeout is submitted
};

}  // namespace splicer::daemon
