#pragma once
// Port 80: what a proxying connection holds between io_uring completions. One operation (and
// its linked timeout) is in flight at a time, so the phases run strictly one after another:
// read the request head, connect, send the head and stream the body up, stream the response
// down, then read the next request (keep-alive) or close. Memory per connection is the two
// fixed buffers (none while idle between requests) plus one head, whatever the body sizes.

#include <linux/time_types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "http/message_parser.h"

namespace splicer::daemon {

inline constexpr std::size_t kHttpBufferBytes = 64 * 1024;
inline constexpr std::uint8_t kClientSide = 0;
inline constexpr std::uint8_t kBackendSide = 1;

enum class HttpPhase {
    read_head,      // reading (and framing) the request head from the client
    connecting,     // connecting to the route's backend
    request,        // sending the upstream head, 100 Continue, then the body
    response,       // relaying the response head and body
    upgrading,      // flushing bytes read past a 101 to the other side, then the data plane
    answering,      // sending splicer's own answer (error or redirect)
    lingering,      // answered and shut: reading what the client still sends, then close
};

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

struct HttpExchange {
    HttpPhase phase = HttpPhase::read_head;
    http::MessageParser request{http::MessageParser::Kind::request};
    http::MessageParser response{http::MessageParser::Kind::response};
    HttpBuffer from_client;
    HttpBuffer from_backend;

    // The send in flight: bytes in `composed` or in a buffer; `after_send` runs when done.
    std::string composed;
    std::span<const char> sending;
    std::uint8_t sending_to = kClientSide;
    std::size_t consumed_on_send = 0;  // buffer bytes to mark forwarded once sent

    // the request being served
    std::optional<std::size_t> route;
    std::uint8_t proxy_protocol = 0;  // the route's, taken at the connect (a reload may follow)
    std::chrono::steady_clock::time_point started{};
    std::chrono::steady_clock::time_point head_deadline{};
    bool request_seen = false;   // a byte of this request arrived (else idle keep-alive)
    bool request_done = false;   // its last byte went to the backend
    bool expect_continue = false;
    bool close_client = false;   // no further request on this connection
    bool response_head_sent = false;
    bool backend_contacted = false;  // a connect to the route's backend was tried
    std::uint64_t bytes_to_client = 0;
    std::uint64_t lingered = 0;
    int status = 0;
    std::string error;  // why splicer answered itself, for the access log
    std::string host;
    std::string method;
    std::string path;

    __kernel_timespec timeout{};  // read by the kernel when the linked timeout is submitted
};

}  // namespace splicer::daemon
