#include "support/http_backend.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support/streams.h"

namespace splicer::test {
namespace {

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

HttpBackend::HttpBackend(std::string name)
    : name_(std::move(name)), listener_(listen_loopback()) {
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
        std::lock_guard lock(mutex_);
        open_.emplace(fd, UniqueFd(fd));
        handlers_.emplace_back([this, fd] { serve(fd); });
    }
}

void HttpBackend::serve(int fd) {
    try {
        BufferedReader reader(fd);
        const auto head = reader.read_head();
        if (head) {
            RecordedRequest request;
            request.peer = peer_address(fd);
            request.raw_head = *head;
            request.head = parse_head(*head);
            const std::string line = request.head.start_line;
            request.method = line.substr(0, line.find(' '));
            request.target = line.substr(line.find(' ') + 1,
                                         line.rfind(' ') - line.find(' ') - 1);
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
                ::shutdown(fd, SHUT_WR);
                std::lock_guard lock(mutex_);
                open_.erase(fd);
                return;
            }
            if (request.head.header("transfer-encoding") == "chunked") {
                reader.read_chunked(sink);
            } else if (!length.empty()) {
                reader.read_exact(std::stoull(length), sink);
            }
            request.body_sha256 = hasher.hex();
            const std::string target = request.target;
            record(std::move(request));
            if (target == "/chunked") {
                write_all(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "6\r\nhello \r\n8\r\nchunked \r\n5\r\nworld\r\n0\r\n\r\n");
            } else if (target.starts_with("/huge/")) {
                const std::uint64_t size = std::stoull(target.substr(6));
                write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(size) +
                                  "\r\n\r\n");
                send_generated(fd, size);
            } else if (target == "/garbage") {
                write_all(fd, "SSH-2.0-not-http\r\n\r\n");
            } else if (target == "/eof") {
                write_all(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
            } else if (target == "/ws") {
                write_all(fd, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\n\r\n");
                echo_until_eof(fd, reader);
            } else {
                if (target.starts_with("/delay/")) {
                    std::this_thread::sleep_for(
                        std::chrono::milliseconds(std::stoul(target.substr(7))));
                }
                write_all(fd, ok_response(name_ + " " + line.substr(0, line.rfind(' '))));
            }
        }
    } catch (const std::exception&) {
        // The peer went away mid-answer: the test sees it from its side.
    }
    ::shutdown(fd, SHUT_WR);
    std::lock_guard lock(mutex_);
    open_.erase(fd);  // closes it
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
