#pragma once
// Frames HTTP/1.x messages on a byte stream with llhttp (built in strict mode, no lenient
// flag set), one message at a time, without owning any buffer: the caller feeds whatever it
// has and learns how many bytes belong to the current message and where its head and its end
// are. Body bytes are never copied: the caller forwards the consumed bytes (chunk framing
// included) as they are. Callable on a plain byte buffer, so a fuzz target can drive it.
//
// On top of llhttp it refuses the request shapes proxies disagree about (RFC 9112 s. 6.3,
// 11.2): Content-Length together with Transfer-Encoding, more than one Content-Length, any
// Transfer-Encoding but "chunked", a bare LF, an obs-fold line; Host missing (HTTP/1.1),
// repeated or not an authority (RFC 3986), and the same for an absolute-form target's
// authority; and it enforces the head, field-count and body limits.

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "http/message_head.h"

namespace splicer::http {

// Longer request-target: 414. Longer head (request line and header section): 431. nginx
// answers 414 from 8 KiB (large_client_header_buffers); the head bound keeps a connection's
// memory bounded.
inline constexpr std::size_t kMaxRequestTarget = 8 * 1024;
inline constexpr std::size_t kMaxHeadBytes = 32 * 1024;
// More header fields in a request: 431, at the first field over the limit. HAProxy stops at
// 101 (tune.http.maxhdr) and nginx's default header buffers hold about as many; real clients
// send 10-30. Without a count a 32 KiB head can carry thousands of tiny fields, and every
// per-field step of the proxy is multiplied by that. Responses are bounded by kMaxHeadBytes
// only: a backend is configured, not anyone.
inline constexpr std::size_t kMaxHeaderFields = 100;

enum class Event {
    need_more,         // every byte given was consumed; the message goes on
    head_complete,     // the head ended after `consumed` bytes; head() is filled
    message_complete,  // the message (head or body) ended after `consumed` bytes
    error,             // error_status() says what to answer
};

struct Step {
    std::size_t consumed = 0;
    Event event = Event::need_more;
};

class MessageParser {
public:
    enum class Kind { request, response };

    explicit MessageParser(Kind kind);
    MessageParser(const MessageParser&) = delete;
    MessageParser& operator=(const MessageParser&) = delete;

    // Feeds bytes of the current message. After head_complete, feed the rest (from
    // `consumed` on) again to frame the body; after message_complete call next_message().
    Step feed(std::span<const char> data);
    // The peer closed: completes a body delimited by EOF (message_complete), else error.
    Step finish();
    // Starts the next message on the same connection.
    void next_message();
    // Starts over for a new connection (a fresh backend connection's responses).
    void reset();

    // Responses: the request was HEAD, so this response has no body whatever it says.
    void set_no_body(bool no_body) { no_body_ = no_body; }
    // Requests: body bytes beyond this are refused with 413 (checked against Content-Length
    // at the head, and while a chunked body streams).
    void set_max_body(std::uint64_t max_body) { max_body_ = max_body; }

    [[nodiscard]] const MessageHead& head() const { return head_; }
    [[nodiscard]] bool head_done() const { return head_done_; }
    [[nodiscard]] std::uint64_t body_bytes() const { return body_bytes_; }
    // Responses: the body runs until the backend closes.
    [[nodiscard]] bool body_until_eof() const;
    // 400, 413, 414 or 431 for requests; 502 for responses.
    [[nodiscard]] int error_status() const { return error_status_; }
    [[nodiscard]] const std::string& error_reason() const { return error_reason_; }

private:
    friend struct ParserCallbacks;

    int fail(int status, std::string reason);
    int validate_head();
    int validate_authority();
    bool scan_head_bytes(std::span<const char> data);
    void reset_message();

    Kind kind_;
    llhttp_t parser_{};
    MessageHead head_;
    std::string field_;
    std::string value_;
    bool head_done_ = false;
    bool message_done_ = false;
    bool no_body_ = false;
    std::uint64_t max_body_ = UINT64_MAX;
    std::size_t head_bytes_ = 0;
    std::uint64_t body_bytes_ = 0;
    int content_length_fields_ = 0;
    int transfer_encoding_fields_ = 0;
    int host_fields_ = 0;
    // raw head scan state, carried across feeds
    char previous_ = '\n';
    bool first_line_ = true;
    int error_status_ = 0;
    std::string error_reason_;
};

}  // namespace splicer::http
