#include "support/http_backend.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include "support/streams.h"

namespace splicer::test {
namespace {

bool equals_ignoring_case(std::string_view a, std::string_view b) {
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

std::string ok_response(const std::string& body) {
    return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

void send_generated(int fd, std::uint64_t count) {
    ByteGenerator generator(kHugeSeed);
    std::string chunk(1 << 20, '\0');
    while (count > 0) {
        const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(count, chunk.size()));
        generator.fill(chunk.data(), take);
        write_all(fd, chunk.data(), take);
        count -= take;
    }
}

void echo_until_eof(int fd, BufferedReader& reader) {
    const std::string early = reader.take_buffered();
    write_all(fd, early);
    char buffer[65536];
    while (true) {
        pollfd wait{fd, POLLIN, 0};
        if (::poll(&wait, 1, 30000) <= 0) {
            return;
        }
        const ssize_t n = ::read(fd, buffer, sizeof(buffer));
        if (n <= 0) {
            return;
        }
        write_all(fd, buffer, static_cast<std::size_t>(n));
    }
}

}  // namespace

HttpBackend::HttpBackend(std::string name, KeepAlive keep_alive)
    : name_(std::move(name)), keep_alive_(keep_alive), listener_(listen_loopback()) {
    acceptor_ = std::thread([this] { accept_loop(); });
}

HttpBackend::~HttpBackend() {
    stopping_ = true;
    ::shutdown(listener_.fd.get(), SHUT_RDWR);
    acceptor_.join();
    {
        std::lock_guard lock(mutex_);
        for (auto& [fd, owner] : open_) {
            ::shutdown(fd, SHUT_RDWR);
        }
    }
    for (std::thread& handler : handlers_) {
        handler.join();
    }
}

void HttpBackend::accept_loop() {
    while (!stopping_) {
        pollfd wait{listener_.fd.get(), POLLIN, 0};
        if (::poll(&wait, 1, 200) <= 0) {
            continue;
        }
        const int fd = ::accept4(listener_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
            continue;
        }
        ++accepted_;
        std::lock_guard lock(mutex_);
        open_.emplace(fd, UniqueFd(fd));
        handlers_.emplace_back([this, fd] { serve(fd); });
    }
}

void HttpBackend::serve(int fd) {
    try {
        BufferedReader reader(fd);
        // Bounded: a keep-alive test sends a few hundred requests per connection at most.
        for (int served = 0; served < 100000 && serve_one(fd, reader); ++served) {
            if (keep_alive_ == KeepAlive::off) {
                break;
            }
        }
    } catch (const std::exception&) {
        // The peer went away mid-answer: the test sees it from its side.
    }
    ::shutdown(fd, SHUT_WR);
    std::lock_guard lock(mutex_);
    open_.erase(fd);  // closes it
}

bool HttpBackend::serve_one(int fd, BufferedReader& reader) {
    const auto head = reader.read_head();
    if (!head) {
        return false;
    }
    RecordedRequest request;
    request.peer = peer_address(fd);
    request.raw_head = *head;
    request.head = parse_head(*head);
    const std::string line = request.head.start_line;
    request.method = line.substr(0, line.find(' '));
    request.target = line.substr(line.find(' ') + 1, line.rfind(' ') - line.find(' ') - 1);
    Sha256Hasher hasher;
    const BodySink sink = [&](std::string_view piece) {
        request.body_bytes += piece.size();
        hasher.update(piece);
        if (request.body.size() < 65536) {
            request.body.append(piece.substr(0, 65536 - request.body.size()));
        }
    };
    const std::string length = request.head.header("content-length");
    if (request.target == "/early") {
        // Answers before reading the body, then closes with it unread (a reset).
        write_all(fd, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\n\r\nno way");
        record(std::move(request));
        return false;
    }
    if (request.head.header("transfer-encoding") == "chunked") {
        reader.read_chunked(sink);
    } else if (!length.empty()) {
        reader.read_exact(std::stoull(length), sink);
    }
    request.body_sha256 = hasher.hex();
    const std::string target = request.target;
    const bool keep = keep_alive_ == KeepAlive::on &&
                      !equals_ignoring_case(request.head.header("connection"), "close");
    record(std::move(request));
    if (target == "/chunked") {
        write_all(fd, std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n") +
                          (keep || keep_alive_ == KeepAlive::off ? "" : "Connection: close\r\n") +
                          "\r\n6\r\nhello \r\n8\r\nchunked \r\n5\r\nworld\r\n0\r\n\r\n");
        return keep;
    }
    if (target.starts_with("/huge/")) {
        const std::uint64_t size = std::stoull(target.substr(6));
        write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n");
        send_generated(fd, size);
        return keep;
    }
    if (target == "/garbage") {
        write_all(fd, "SSH-2.0-not-http\r\n\r\n");
        return false;
    }
    if (target == "/eof") {
        write_all(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
        return false;
    }
    if (target == "/ws") {
        write_all(fd, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\n\r\n");
        echo_until_eof(fd, reader);
        return false;
    }
    if (target.starts_with("/delay/")) {
        std::this_thread::sleep_for(std::chrono::milliseconds(std::stoul(target.substr(7))));
    }
    const std::string body = name_ + " " + line.substr(0, line.rfind(' '));
    if (target == "/say-close" || !keep) {
        write_all(fd, ok_response(body));
        return false;
    }
    if (target == "/http10") {
        write_all(fd, "HTTP/1.0 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                          "\r\n\r\n" + body);
        return false;
    }
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\n\r\n" + body);
    if (target == "/then-close") {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        return false;
    }
    if (target == "/then-drop") {
        if (const auto next = reader.read_head()) {
            RecordedRequest dropped;
            dropped.raw_head = *next;
            dropped.head = parse_head(*next);
            const std::string next_line = dropped.head.start_line;
            dropped.method = next_line.substr(0, next_line.find(' '));
            dropped.target = "dropped " + next_line.substr(next_line.find(' ') + 1,
                                                           next_line.rfind(' ') -
                                                               next_line.find(' ') - 1);
            record(std::move(dropped));
        }
        return false;
    }
    return true;
}

std::size_t HttpBackend::open_connections() const {
    std::lock_guard lock(mutex_);
    return open_.size();
}

void HttpBackend::record(RecordedRequest request) {
    std::lock_guard lock(mutex_);
    requests_.push_back(std::move(request));
    changed_.notify_all();
}

std::vector<RecordedRequest> HttpBackend::requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
}

bool HttpBackend::wait_for_requests(std::size_t count, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return requests_.size() >= count; });
}

}  // namespace splicer::test
