#include "support/load_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "support/sockets.h"

namespace splicer::test {
namespace {

using namespace std::chrono_literals;

// Bytes made ready to send at a time per connection: small, since thousands may be sending.
constexpr std::size_t kChunk = 16 * 1024;
constexpr std::uint32_t kFirstSourceAddress = 0x7f000002;  // 127.0.0.2

struct Stream {
    explicit Stream(LoadStream load_stream)
        : spec(std::move(load_stream)), generator(spec.send.seed) {}

    LoadStream spec;
    UniqueFd fd;
    bool connecting = true;
    bool routed = false;  // the whole prefix came back: the daemon spliced it to the backend
    bool write_shut = false;
    ByteGenerator generator;
    Sha256Hasher sent_hash;
    Sha256Hasher received_hash;
    std::string pending;  // made but not yet sent
    std::size_t pending_offset = 0;
    std::uint64_t made = 0;  // bytes moved into `pending` so far
    Clock::time_point deadline{};
};

bool is_reset_error(int error) {
    return error == ECONNRESET || error == EPIPE;
}

class LoadRun {
public:
    explicit LoadRun(const LoadPlan& plan)
        : plan_(plan),
          epoll_(::epoll_create1(EPOLL_CLOEXEC)),
          holding_(static_cast<bool>(plan.while_held)) {
        if (!epoll_) {
            throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
        }
        if (!plan.stream_for || plan.max_open == 0 || plan.max_unrouted == 0 ||
            plan.source_addresses == 0) {
            throw std::invalid_argument("run_load: incomplete plan");
        }
        if (holding_ && plan.max_open < plan.connections) {
            throw std::invalid_argument("run_load: a hold needs every connection open at once");
        }
        streams_.resize(plan.connections);
        report_.outcomes.resize(plan.connections);
    }

    LoadReport run() {
        const Clock::time_point start = Clock::now();
        const Clock::time_point deadline = start + plan_.timeout;
        Clock::time_point next_expiry_scan = start;
        std::array<epoll_event, 1024> events{};
        while (true) {
            while (next_ < plan_.connections && open_ < plan_.max_open &&
                   unrouted_ < plan_.max_unrouted &&
                   (plan_.open_limit == nullptr || next_ < plan_.open_limit->load())) {
                open_next();
            }
            report_.max_open_seen = std::max(report_.max_open_seen, open_);
            if (holding_ && next_ == plan_.connections && unrouted_ == 0) {
                release_hold();
            }
            if (open_ == 0 && next_ == plan_.connections) {
                break;
            }
            const Clock::time_point now = Clock::now();
            if (now >= deadline) {
                end_all_open_as_timed_out();
                break;
            }
            if (now >= next_expiry_scan) {
                end_expired(now);
                next_expiry_scan = now + 100ms;
            }
            const int ready = ::epoll_wait(epoll_.get(), events.data(),
                                           static_cast<int>(events.size()), 50);
            if (ready < 0 && errno != EINTR) {
                throw std::runtime_error(std::string("epoll_wait: ") + std::strerror(errno));
            }
            for (int i = 0; i < ready; ++i) {
                const epoll_event& event = events[static_cast<std::size_t>(i)];
                service(static_cast<std::size_t>(event.data.u64), event.events);
            }
        }
        report_.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
        return std::move(report_);
    }

private:
    void open_next() {
        const std::size_t index = next_++;
        auto stream = std::make_unique<Stream>(plan_.stream_for(index));
        LoadOutcome& outcome = report_.outcomes[index];
        outcome.expected = stream->spec.send.total();
        outcome.started = Clock::now();
        stream->deadline = outcome.started + plan_.stream_timeout;
        stream->fd = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        streams_[index] = std::move(stream);
        ++open_;
        ++unrouted_;
        Stream& opened = *streams_[index];
        if (!opened.fd) {
            fail(index, "socket", errno);
            return;
        }
        // The port is picked at connect() from the whole 4-tuple, not at bind() from the
        // address alone: 20,000 connections from 8 addresses need no more than the usual range.
        const int on = 1;
        ::setsockopt(opened.fd.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof(on));
        sockaddr_in source{};
        source.sin_family = AF_INET;
        source.sin_addr.s_addr =
            htonl(kFirstSourceAddress + static_cast<std::uint32_t>(index % plan_.source_addresses));
        if (::bind(opened.fd.get(), reinterpret_cast<const sockaddr*>(&source), sizeof(source)) !=
            0) {
            fail(index, "bind", errno);
            return;
        }
        const SocketAddress target = loopback_address(plan_.port);
        if (::connect(opened.fd.get(), target.get(), target.length) != 0 && errno != EINPROGRESS) {
            fail(index, "connect", errno);
            return;
        }
        epoll_event event{};
        event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        event.data.u64 = index;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, opened.fd.get(), &event) != 0) {
            fail(index, "epoll_ctl", errno);
        }
    }

    void service(std::size_t index, std::uint32_t events) {
        Stream* stream = streams_[index].get();
        if (stream == nullptr) {
            return;  // ended earlier in this batch
        }
        if (stream->connecting) {
            int error = 0;
            socklen_t length = sizeof(error);
            ::getsockopt(stream->fd.get(), SOL_SOCKET, SO_ERROR, &error, &length);
            if (error != 0) {
                fail(index, "connect", error);
                return;
            }
            if ((events & EPOLLOUT) == 0) {
                return;
            }
            stream->connecting = false;
            report_.outcomes[index].connected = true;
            report_.outcomes[index].local_port = local_port(stream->fd.get());
        }
        progress(index);
    }

    // Sends and receives what the socket allows; ends the stream when it is done.
    void progress(std::size_t index) {
        if (reset_if_due(index) || !send_some(index) || reset_if_due(index) ||
            !receive_some(index) || reset_if_due(index)) {
            return;
        }
        shut_down_when_done(index);
        if (report_.outcomes[index].eof) {
            end(index);  // the echo ended (all of it, or cut by a fault): nothing more comes
        }
    }

    // Half-closes once everything is sent and, unless plan.half_close_after_send, back.
    void shut_down_when_done(std::size_t index) {
        Stream& stream = *streams_[index];
        const LoadOutcome& outcome = report_.outcomes[index];
        if (!stream.write_shut && outcome.sent == stream.spec.send.total() &&
            (plan_.half_close_after_send || outcome.received == outcome.sent)) {
            ::shutdown(stream.fd.get(), SHUT_WR);
            stream.write_shut = true;
        }
    }

    // How far this stream may send right now.
    [[nodiscard]] std::uint64_t send_limit(const Stream& stream) const {
        std::uint64_t limit = stream.spec.send.total();
        if (holding_) {
            limit = std::min<std::uint64_t>(limit, stream.spec.send.prefix.size());
        }
        if (stream.spec.reset) {
            limit = std::min(limit, stream.spec.reset->after_sent);
        }
        return limit;
    }

    // Moves the next bytes (prefix first, then generated) into `pending`; false if none may go.
    bool make_more(Stream& stream) const {
        const std::uint64_t limit = send_limit(stream);
        if (stream.made >= limit) {
            return false;
        }
        const auto size = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, limit - stream.made));
        stream.pending.resize(size);
        stream.pending_offset = 0;
        const std::string& prefix = stream.spec.send.prefix;
        std::size_t filled = 0;
        if (stream.made < prefix.size()) {
            filled = std::min(size, prefix.size() - static_cast<std::size_t>(stream.made));
            std::memcpy(stream.pending.data(), prefix.data() + stream.made, filled);
        }
        stream.generator.fill(stream.pending.data() + filled, size - filled);
        stream.made += size;
        return true;
    }

    // false when the stream ended.
    bool send_some(std::size_t index) {
        Stream& stream = *streams_[index];
        LoadOutcome& outcome = report_.outcomes[index];
        while (true) {
            if (stream.pending_offset == stream.pending.size() && !make_more(stream)) {
                return true;
            }
            const char* data = stream.pending.data() + stream.pending_offset;
            const std::size_t size = stream.pending.size() - stream.pending_offset;
            const ssize_t sent = ::send(stream.fd.get(), data, size, MSG_NOSIGNAL);
            if (sent < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    return true;
                }
                if (errno == EINTR) {
                    continue;
                }
                fail(index, "send", errno);
                return false;
            }
            stream.sent_hash.update(data, static_cast<std::size_t>(sent));
            stream.pending_offset += static_cast<std::size_t>(sent);
            outcome.sent += static_cast<std::uint64_t>(sent);
        }
    }

    // false when the stream ended.
    bool receive_some(std::size_t index) {
        Stream& stream = *streams_[index];
        LoadOutcome& outcome = report_.outcomes[index];
        while (!outcome.eof) {
            const ssize_t got = ::recv(stream.fd.get(), buffer_.data(), buffer_.size(), 0);
            if (got < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    break;
                }
                if (errno == EINTR) {
                    continue;
                }
                fail(index, "recv", errno);
                return false;
            }
            if (got == 0) {
                outcome.eof = true;
                break;
            }
            stream.received_hash.update(buffer_.data(), static_cast<std::size_t>(got));
            outcome.received += static_cast<std::uint64_t>(got);
        }
        if (!stream.routed && outcome.received >= stream.spec.send.prefix.size()) {
            stream.routed = true;
            --unrouted_;
        }
        return true;
    }

    // Resets the stream once its reset point is reached; true when it did.
    bool reset_if_due(std::size_t index) {
        const Stream& stream = *streams_[index];
        const LoadOutcome& outcome = report_.outcomes[index];
        if (!stream.spec.reset || outcome.sent < stream.spec.reset->after_sent ||
            outcome.received < stream.spec.reset->after_received) {
            return false;
        }
        report_.outcomes[index].reset_by_us = true;
        end(index);
        return true;
    }

    void release_hold() {
        plan_.while_held();
        holding_ = false;
        const Clock::time_point deadline = Clock::now() + plan_.stream_timeout;
        for (std::size_t index = 0; index < streams_.size(); ++index) {
            if (streams_[index]) {
                streams_[index]->deadline = deadline;  // the hold does not count
                progress(index);
            }
        }
    }

    void end_expired(Clock::time_point now) {
        for (std::size_t index = 0; index < streams_.size(); ++index) {
            if (streams_[index] && streams_[index]->deadline <= now) {
                report_.outcomes[index].timed_out = true;
                end(index);
            }
        }
    }

    void end_all_open_as_timed_out() {
        for (std::size_t index = 0; index < streams_.size(); ++index) {
            if (streams_[index]) {
                report_.outcomes[index].timed_out = true;
                end(index);
            }
        }
    }

    void fail(std::size_t index, const char* what, int error) {
        LoadOutcome& outcome = report_.outcomes[index];
        if (is_reset_error(error)) {
            outcome.reset = true;
        } else {
            outcome.error = std::string(what) + ": " + std::strerror(error);
        }
        end(index);
    }

    void end(std::size_t index) {
        std::unique_ptr<Stream> stream = std::move(streams_[index]);
        LoadOutcome& outcome = report_.outcomes[index];
        outcome.sent_sha256 = stream->sent_hash.hex();
        outcome.received_sha256 = stream->received_hash.hex();
        outcome.ended = Clock::now();
        if (outcome.reset_by_us) {
            close_with_reset(std::move(stream->fd));
        }
        --open_;
        if (!stream->routed) {
            --unrouted_;
        }
        if (plan_.finished != nullptr) {
            plan_.finished->fetch_add(1);
        }
    }

    const LoadPlan& plan_;
    UniqueFd epoll_;
    bool holding_;
    std::vector<std::unique_ptr<Stream>> streams_;
    LoadReport report_;
    std::size_t next_ = 0;
    std::size_t open_ = 0;
    std::size_t unrouted_ = 0;
    std::array<char, 64 * 1024> buffer_{};
};

}  // namespace

LoadReport run_load(const LoadPlan& plan) {
    return LoadRun(plan).run();
}

}  // namespace splicer::test
