#include "selftest/relay.h"

#include <sys/socket.h>

#include <cerrno>
#include <utility>

namespace splicer::selftest {
namespace {

// One read of passed bytes at most this large, as the plane's first copy buffer.
constexpr std::size_t kReadBytes = 64 * 1024;

bool would_block(int error) {
    return error == EAGAIN || error == EWOULDBLOCK || error == EINTR;
}

}  // namespace

Result<Relay> Relay::start(bpf::SpliceProgram& program, int front_fd, int back_fd) {
    Relay relay(program);
    const int fds[2] = {front_fd, back_fd};
    for (std::size_t i = 0; i < 2; ++i) {
        auto baseline = plane::take_baseline(fds[i]);
        if (!baseline) {
            return baseline.error().with_context("baseline");
        }
        relay.baselines_[i] = *baseline;
        auto cookie = bpf::socket_cookie(fds[i]);
        if (!cookie) {
            return cookie.error();
        }
        relay.directions_[i] = Direction{.source = fds[i], .sink = fds[1 - i], .cookie = *cookie};
    }
    if (auto paired = program.pair(front_fd, back_fd); !paired) {
        return paired.error().with_context("pair");
    }
    relay.paired_ = true;
    // Kernel fact 1: bytes queued before insertion wait for a wake-up.
    for (const int fd : fds) {
        if (auto kicked = plane::kick(fd); !kicked) {
            return kicked.error().with_context("kick");
        }
    }
    return relay;
}

Relay::Relay(Relay&& other) noexcept
    : program_(other.program_),
      directions_(std::move(other.directions_)),
      baselines_(other.baselines_),
      paired_(std::exchange(other.paired_, false)) {}

Relay::~Relay() {
    if (paired_) {
        program_->unpair_cookies(directions_[0].cookie, directions_[1].cookie);
    }
}

bool Relay::eof_propagated(int direction) const {
    return directions_[static_cast<std::size_t>(direction)].sink_shut;
}

std::uint64_t Relay::copied(int direction) const {
    return directions_[static_cast<std::size_t>(direction)].copied;
}

Result<bool> Relay::service() {
    bool moved = false;
    for (std::size_t direction = 0; direction < 2; ++direction) {
        auto served = service(direction);
        if (!served) {
            return served.error().with_context(direction == SPLICER_DIR_CLIENT_TO_BACKEND
                                                   ? "client to backend"
                                                   : "backend to client");
        }
        moved = moved || *served;
    }
    return moved;
}

Result<bool> Relay::service(std::size_t direction) {
    Direction& flow = directions_[direction];
    if (flow.sink_shut) {
        return false;
    }
    bool moved = false;
    if (flow.held.empty()) {
        // Also after the EOF: a pass the kernel deferred can land behind the FIN.
        auto read = read_passed(flow);
        if (!read) {
            return read;
        }
        moved = *read;
    }
    if (!flow.held.empty()) {
        auto sent = send_held(flow, baselines_[1 - direction]);
        if (!sent) {
            return sent;
        }
        moved = moved || *sent;
    }
    if (flow.source_eof && flow.held.empty()) {
        auto shut = propagate_eof(direction);
        if (!shut) {
            return shut;
        }
        moved = moved || *shut;
    }
    return moved;
}

// Whatever is readable on a paired socket was passed up by the verdict: redirected bytes
// never show there.
Result<bool> Relay::read_passed(Direction& flow) {
    flow.held.resize(kReadBytes);
    const ssize_t n = ::recv(flow.source, flow.held.data(), flow.held.size(), MSG_DONTWAIT);
    if (n <= 0) {
        flow.held.clear();
        if (n == 0) {
            const bool first = !flow.source_eof;
            flow.source_eof = true;
            return first;
        }
        if (would_block(errno)) {
            return false;
        }
        return errno_error("recv of passed bytes");
    }
    flow.held.resize(static_cast<std::size_t>(n));
    flow.sent = 0;
    // Read after the recv: every skb redirected before the ones just read is counted.
    auto link = program_->link_state(flow.cookie);
    if (!link) {
        return link.error();
    }
    if (link->abort) {
        return Error{"the verdict aborted the pair (an overlap it could not trim)"};
    }
    flow.redirected_before = link->redirected;
    return true;
}

Result<bool> Relay::send_held(Direction& flow, const plane::SocketBaseline& sink_baseline) {
    // Order: every byte redirected before the held ones must be in the sink first.
    auto absorbed =
        plane::redirects_absorbed(flow.sink, sink_baseline, flow.redirected_before, flow.copied);
    if (!absorbed) {
        return absorbed.error();
    }
    if (!*absorbed) {
        return false;
    }
    const ssize_t n = ::send(flow.sink, flow.held.data() + flow.sent, flow.held.size() - flow.sent,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
        if (would_block(errno)) {
            return false;
        }
        return errno_error("send of passed bytes");
    }
    flow.sent += static_cast<std::size_t>(n);
    if (flow.sent == flow.held.size()) {
        flow.copied += flow.held.size();
        flow.held.clear();
        if (auto told = program_->set_copied(flow.cookie, flow.copied); !told) {
            return told.error();
        }
    }
    return n > 0;
}

Result<bool> Relay::propagate_eof(std::size_t direction) {
    Direction& flow = directions_[direction];
    // Kernel fact 4: the FIN must not overtake redirected bytes still queued for the sink.
    auto may = plane::eof_may_propagate(flow.source, baselines_[direction], flow.sink,
                                        baselines_[1 - direction]);
    if (!may) {
        return may.error();
    }
    if (!*may) {
        return false;
    }
    if (::shutdown(flow.sink, SHUT_WR) != 0) {
        return errno_error("shutdown");
    }
    flow.sink_shut = true;
    return true;
}

}  // namespace splicer::selftest
