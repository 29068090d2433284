#pragma once
// A parsed HTTP/1.x request or response head: the start line's parts and the header fields
// exactly as received (name and value bytes; llhttp trims only the optional whitespace
// around a value), plus the framing llhttp worked out.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace splicer::http {

struct Header {
    std::string name;
    std::string value;
};

struct MessageHead {
    std::string method;  // requests
    std::string target;  // requests: the request-target as sent
    int status = 0;      // responses
    std::string reason;  // responses
    unsigned major = 1;
    unsigned minor = 1;
    std::vector<Header> headers;
    bool keep_alive = false;  // the sender allows another message on this connection
    bool upgrade = false;     // Upgrade + Connection: upgrade on a request; a 101 response
    bool chunked = false;
    std::optional<std::uint64_t> content_length;

    // The first field named `name` (ASCII case-insensitive), or nullptr.
    [[nodiscard]] const Header* find(std::string_view name) const;
};

// ASCII letters folded to lower case, every other byte as it is: HTTP's field names and the
// tokens compared here are ASCII (RFC 9110 s. 5.1), and a bare comparison costs no libc
// call per byte (std::tolower showed in the per-request profile).
constexpr char ascii_lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// ASCII case-insensitive equality.
bool equals_ignoring_case(std::string_view a, std::string_view b);

// "HTTP/1.1": the version as the start line carried it.
std::string version_text(const MessageHead& head);

}  // namespace splicer::http
