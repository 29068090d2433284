#include "selftest/exchange.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace splicer::selftest {
namespace {

// Waiting for the sink to absorb redirected bytes (or for an EOF to become safe) wakes no
// poll: the relay looks again this often, as the plane's recheck timer does.
constexpr int kTickMilliseconds = 1;
constexpr std::size_t kChunkBytes = 64 * 1024;

bool would_block(int error) {
    return error == EAGAIN || error == EWOULDBLOCK || error == EINTR;
}

// Writes what is left of the stream (then its shutdown); true when something moved.
Result<bool> write_some(int fd, Stream& stream) {
    bool moved = false;
    while (stream.written < stream.to_send.size()) {
        const std::size_t size = std::min(kChunkBytes, stream.to_send.size() - stream.written);
        const ssize_t n =
            ::send(fd, stream.to_send.data() + stream.written, size, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (would_block(errno)) {
                return moved;
            }
            return errno_error("send");
        }
        stream.written += static_cast<std::size_t>(n);
        moved = true;
    }
    if (stream.shut_after && !stream.shut) {
        if (::shutdown(fd, SHUT_WR) != 0) {
            return errno_error("shutdown");
        }
        stream.shut = true;
        moved = true;
    }
    return moved;
}

// Reads whatever arrived; true when something did (or the EOF).
Result<bool> read_some(int fd, Stream& stream) {
    bool moved = false;
    std::byte buffer[kChunkBytes];
    while (!stream.eof_received) {
        const ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
        if (n < 0) {
            if (would_block(errno)) {
                return moved;
            }
            return errno_error("recv");
        }
        if (n == 0) {
            stream.eof_received = true;
        } else {
            stream.received.insert(stream.received.end(), buffer, buffer + n);
        }
        moved = true;
    }
    return moved;
}

}  // namespace

Result<bool> Exchange::round() {
    bool moved = false;
    const std::pair<Result<bool>, const char*> steps[] = {
        {write_some(pair_.client.get(), upstream), "client"},
        {write_some(pair_.server.get(), downstream), "server"},
        {server_reads ? read_some(pair_.server.get(), upstream) : Result<bool>(false), "server"},
        {read_some(pair_.client.get(), downstream), "client"},
        {relay_ != nullptr ? relay_->service() : Result<bool>(false), "relay"},
    };
    for (const auto& [step, who] : steps) {
        if (!step) {
            return step.error().with_context(who);
        }
        moved = moved || *step;
    }
    return moved;
}

Result<void> Exchange::run_until(const std::function<bool()>& done, Clock::time_point deadline) {
    while (!done()) {
        if (Clock::now() >= deadline) {
            return Error{"deadline passed: " + progress()};
        }
        auto moved = round();
        if (!moved) {
            return moved.error().with_context(progress());
        }
        if (*moved) {
            continue;
        }
        // Nothing moved: sleep until a socket has news, or one tick for the relay's rechecks.
        pollfd fds[] = {{pair_.client.get(), POLLIN, 0},
                        {pair_.server.get(), server_reads ? short{POLLIN} : short{0}, 0},
                        {pair_.front.get(), POLLIN, 0},
                        {pair_.back.get(), POLLIN, 0}};
        ::poll(fds, std::size(fds), kTickMilliseconds);
    }
    return {};
}

std::string Exchange::progress() const {
    auto text = [](const Stream& stream) {
        return std::to_string(stream.received.size()) + " of " +
               std::to_string(stream.to_send.size()) + " bytes arrived" +
               (stream.eof_received ? " then EOF" : "");
    };
    return "client to server " + text(upstream) + ", server to client " + text(downstream);
}

Result<void> check_arrived(const Stream& stream, const char* name) {
    const auto& sent = stream.to_send;
    const auto& got = stream.received;
    const std::size_t common = std::min(sent.size(), got.size());
    const auto mismatch =
        std::mismatch(sent.begin(), sent.begin() + static_cast<long>(common), got.begin());
    if (mismatch.first != sent.begin() + static_cast<long>(common)) {
        return Error{std::string(name) + ": byte " + std::to_string(mismatch.first - sent.begin()) +
                     " of " + std::to_string(sent.size()) + " differs"};
    }
    if (got.size() != sent.size()) {
        return Error{std::string(name) + ": " + std::to_string(got.size()) + " of " +
                     std::to_string(sent.size()) + " bytes arrived"};
    }
    return {};
}

std::vector<std::byte> pattern_bytes(std::size_t size, std::uint32_t seed) {
    std::vector<std::byte> bytes(size);
    fill_pattern(bytes.data(), size, seed);
    return bytes;
}

}  // namespace splicer::selftest
