#include "support/http_wire.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include "support/sockets.h"
#include "support/streams.h"

namespace splicer::test {
namespace {

bool same_name(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

std::string_view trimmed(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
        text.remove_prefix(1);
    }
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) {
        text.remove_suffix(1);
    }
    return text;
}

}  // namespace

BufferedReader::BufferedReader(int fd, std::chrono::milliseconds timeout)
    : fd_(fd), timeout_(timeout) {}

bool BufferedReader::fill() {
    pollfd wait{fd_, POLLIN, 0};
    if (::poll(&wait, 1, static_cast<int>(timeout_.count())) <= 0) {
        return false;
    }
    char chunk[65536];
    const ssize_t n = ::read(fd_, chunk, sizeof(chunk));
    if (n <= 0) {
        return false;
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
    return true;
}

std::optional<std::string> BufferedReader::read_head() {
    std::size_t end = 0;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
        if (!fill()) {
            return std::nullopt;
        }
    }
    std::string head = buffer_.substr(0, end + 4);
    buffer_.erase(0, end + 4);
    return head;
}

std::optional<std::string> BufferedReader::read_line() {
    std::size_t end = 0;
    while ((end = buffer_.find("\r\n")) == std::string::npos) {
        if (!fill()) {
            return std::nullopt;
        }
    }
    std::string line = buffer_.substr(0, end);
    buffer_.erase(0, end + 2);
    return line;
}

bool BufferedReader::read_exact(std::uint64_t size, const BodySink& sink) {
    while (size > 0) {
        if (buffer_.empty() && !fill()) {
            return false;
        }
        const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(size, buffer_.size()));
        sink(std::string_view(buffer_).substr(0, take));
        buffer_.erase(0, take);
        size -= take;
    }
    return true;
}

bool BufferedReader::read_chunked(const BodySink& sink) {
    while (true) {
        const auto size_line = read_line();
        if (!size_line) {
            return false;
        }
        const std::uint64_t size = std::stoull(*size_line, nullptr, 16);
        if (size == 0) {
            break;
        }
        if (!read_exact(size, sink) || read_line() != std::string()) {
            return false;
        }
    }
    while (true) {  // trailers, then the blank line
        const auto line = read_line();
        if (!line) {
            return false;
        }
        if (line->empty()) {
            return true;
        }
    }
}

bool BufferedReader::read_to_eof(const BodySink& sink) {
    while (true) {
        if (!buffer_.empty()) {
            sink(buffer_);
            buffer_.clear();
        }
        if (!fill()) {
            return true;
        }
    }
}

std::string ParsedHead::header(std::string_view name) const {
    for (const auto& [field, value] : headers) {
        if (same_name(field, name)) {
            return value;
        }
    }
    return "";
}

std::size_t ParsedHead::count(std::string_view name) const {
    return static_cast<std::size_t>(std::count_if(
        headers.begin(), headers.end(), [&](const auto& field) { return same_name(field.first, name); }));
}

ParsedHead parse_head(std::string_view head) {
    ParsedHead parsed;
    std::size_t pos = head.find("\r\n");
    parsed.start_line = std::string(head.substr(0, pos));
    while (pos != std::string_view::npos && pos + 2 < head.size()) {
        const std::size_t start = pos + 2;
        pos = head.find("\r\n", start);
        const std::string_view line = head.substr(start, pos - start);
        const std::size_t colon = line.find(':');
        if (line.empty() || colon == std::string_view::npos) {
            continue;
        }
        parsed.headers.emplace_back(std::string(line.substr(0, colon)),
                                    std::string(trimmed(line.substr(colon + 1))));
    }
    return parsed;
}

HttpResponse read_response(BufferedReader& reader, bool no_body) {
    HttpResponse response;
    const auto head = reader.read_head();
    if (!head) {
        return response;
    }
    response.raw_head = *head;
    response.head = parse_head(*head);
    if (response.head.start_line.size() >= 12) {
        response.status = std::stoi(response.head.start_line.substr(9, 3));
    }
    Sha256Hasher hasher;
    const BodySink sink = [&](std::string_view piece) {
        response.body_bytes += piece.size();
        hasher.update(piece);
        if (response.body.size() < (1U << 20)) {
            response.body.append(piece.substr(0, (1U << 20) - response.body.size()));
        }
    };
    const std::string length = response.head.header("content-length");
    if (no_body || response.status < 200 || response.status == 204 || response.status == 304) {
        response.complete = true;
    } else if (same_name(response.head.header("transfer-encoding"), "chunked")) {
        response.complete = reader.read_chunked(sink);
    } else if (!length.empty()) {
        response.complete = reader.read_exact(std::stoull(length), sink);
    } else {
        response.complete = reader.read_to_eof(sink);
    }
    response.body_sha256 = hasher.hex();
    return response;
}

HttpResponse http_exchange(std::uint16_t port, const std::string& request) {
    UniqueFd fd = connect_loopback(port);
    write_all(fd.get(), request);
    BufferedReader reader(fd.get());
    return read_response(reader, request.starts_with("HEAD "));
}

}  // namespace splicer::test
