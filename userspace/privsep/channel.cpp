#include "privsep/channel.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

namespace splicer::privsep {
namespace {

Result<void> send_record(int fd, const char* data, std::size_t size) {
    while (true) {
        const ssize_t sent = ::send(fd, data, size, MSG_NOSIGNAL);
        if (sent >= 0) {
            // A seqpacket record goes whole or not at all.
            return {};
        }
        if (errno != EINTR) {
            return errno_error("sending to the other process");
        }
    }
}

Result<std::size_t> receive_record(int fd, char* data, std::size_t size) {
    while (true) {
        const ssize_t got = ::recv(fd, data, size, MSG_TRUNC);
        if (got > 0 && static_cast<std::size_t>(got) > size) {
            return Error{"a record larger than expected"};
        }
        if (got > 0) {
            return static_cast<std::size_t>(got);
        }
        if (got == 0) {
            return Error{"the other process closed the socket"};
        }
        if (errno != EINTR) {
            return errno_error("receiving from the other process");
        }
    }
}

}  // namespace

Result<void> send_message(int fd, std::string_view message) {
    const auto total = static_cast<std::uint64_t>(message.size());
    std::vector<char> record(kRecordBytes);
    std::memcpy(record.data(), &total, sizeof total);
    std::size_t at = std::min(message.size(), kRecordBytes - sizeof total);
    std::memcpy(record.data() + sizeof total, message.data(), at);
    if (auto sent = send_record(fd, record.data(), sizeof total + at); !sent) {
        return sent;
    }
    while (at < message.size()) {
        const std::size_t size = std::min(message.size() - at, kRecordBytes);
        if (auto sent = send_record(fd, message.data() + at, size); !sent) {
            return sent;
        }
        at += size;
    }
    return {};
}

Result<std::string> receive_message(int fd, std::size_t max_bytes) {
    std::vector<char> record(kRecordBytes);
    auto first = receive_record(fd, record.data(), record.size());
    if (!first) {
        return first.error();
    }
    std::uint64_t total = 0;
    if (*first < sizeof total) {
        return Error{"a message shorter than its length"};
    }
    std::memcpy(&total, record.data(), sizeof total);
    const std::size_t carried = *first - sizeof total;
    if (total > max_bytes || carried > total) {
        return Error{"a message larger than " + std::to_string(max_bytes) + " bytes"};
    }
    std::string message(record.data() + sizeof total, carried);
    while (message.size() < total) {
        auto got = receive_record(fd, record.data(), record.size());
        if (!got) {
            return got.error();
        }
        if (*got > total - message.size()) {
            return Error{"a message longer than its length"};
        }
        message.append(record.data(), *got);
    }
    return message;
}

Result<void> set_timeouts(int fd, long send_seconds, long receive_seconds) {
    const timeval send{.tv_sec = send_seconds, .tv_usec = 0};
    const timeval receive{.tv_sec = receive_seconds, .tv_usec = 0};
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send, sizeof send) != 0 ||
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &receive, sizeof receive) != 0) {
        return errno_error("socket timeouts");
    }
    return {};
}

}  // namespace splicer::privsep
