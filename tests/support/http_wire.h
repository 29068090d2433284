#pragma once
// HTTP/1.1 on a blocking test socket, written independently of splicer's parser so the tests
// check splicer against a second reading: a buffered reader with a deadline, head parsing,
// Content-Length / chunked / until-EOF bodies, and one-response reads for clients.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace splicer::test {

using BodySink = std::function<void(std::string_view)>;

class BufferedReader {
public:
    explicit BufferedReader(int fd, std::chrono::milliseconds timeout = std::chrono::seconds(20));

    // The head through its blank line; nullopt on EOF, error or timeout first.
    std::optional<std::string> read_head();
    bool read_exact(std::uint64_t size, const BodySink& sink);
    // Decodes a chunked body (trailers read and dropped).
    bool read_chunked(const BodySink& sink);
    bool read_to_eof(const BodySink& sink);
    // Bytes read past what was asked for so far (e.g. behind a 101's head).
    [[nodiscard]] std::string take_buffered() { return std::exchange(buffer_, {}); }

private:
    bool fill();
    std::optional<std::string> read_line();

    int fd_;
    std::chrono::milliseconds timeout_;
    std::string buffer_;
};

struct ParsedHead {
    std::string start_line;
    std::vector<std::pair<std::string, std::string>> headers;
    // The first value of `name` (case-insensitive), "" when absent.
    [[nodiscard]] std::string header(std::string_view name) const;
    [[nodiscard]] std::size_t count(std::string_view name) const;
};
ParsedHead parse_head(std::string_view head);

struct HttpResponse {
    bool complete = false;  // a whole response was read
    int status = 0;
    std::string raw_head;
    ParsedHead head;
    std::uint64_t body_bytes = 0;
    std::string body;  // the first 1 MiB of the (decoded) body
    std::string body_sha256;
};

// Reads one response; `no_body` for the answer to a HEAD request.
HttpResponse read_response(BufferedReader& reader, bool no_body = false);

// Connects to 127.0.0.1:port, sends `request`, reads one response.
HttpResponse http_exchange(std::uint16_t port, const std::string& request);

}  // namespace splicer::test
