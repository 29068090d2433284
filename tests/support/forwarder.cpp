#include "support/forwarder.h"

#include "plane/sockmap_steps.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace splicer::test {
namespace {

template <typename T>
T must(Result<T> result, const char* what) {
    if (!result) {
        throw std::runtime_error(std::string(what) + ": " + result.error().message);
    }
    return std::move(result).value();
}

constexpr std::size_t kCopyChunk = 256 * 1024;
// Chunks one service copies before the poll loop looks at the other direction.
constexpr int kRoundsPerService = 64;

// plane/sockmap_steps.h's "sink broken": an error asking counts as broken.
bool sink_broken(int fd) {
    auto broken = plane::connection_broken(fd);
    return !broken || *broken;
}
// peek_commit offers dst everything passed, up to this: a peek always starts at the head.
constexpr std::size_t kPeekMax = 8 * 1024 * 1024;

}  // namespace

SockmapForwarder::SockmapForwarder(bpf::SpliceProgram& program, int front_fd, int back_fd,
                                   ForwarderOptions options)
    : program_(program), front_fd_(front_fd), back_fd_(back_fd), options_(options) {
    // Baselines before insertion: from here on every byte goes through the verdict.
    front_baseline_ = must(plane::take_baseline(front_fd), "front baseline");
    back_baseline_ = must(plane::take_baseline(back_fd), "back baseline");
    if (auto paired = program_.pair(front_fd, back_fd); !paired) {
        throw std::runtime_error("pair: " + paired.error().message);
    }
    directions_[SPLICER_DIR_CLIENT_TO_BACKEND] =
        Direction{.src = front_fd,
                  .dst = back_fd,
                  .src_cookie = must(bpf::socket_cookie(front_fd), "front cookie"),
                  .src_baseline = &front_baseline_,
                  .dst_baseline = &back_baseline_};
    directions_[SPLICER_DIR_BACKEND_TO_CLIENT] =
        Direction{.src = back_fd,
                  .dst = front_fd,
                  .src_cookie = must(bpf::socket_cookie(back_fd), "back cookie"),
                  .src_baseline = &back_baseline_,
                  .dst_baseline = &front_baseline_};
    if (options_.kick) {
        if (auto kicked = plane::kick(front_fd); !kicked) {
            throw std::runtime_error(kicked.error().message);
        }
        if (auto kicked = plane::kick(back_fd); !kicked) {
            throw std::runtime_error(kicked.error().message);
        }
    }
    thread_ = std::thread([this] {
        run();
        loop_done_.store(true);
    });
}

SockmapForwarder::~SockmapForwarder() {
    stop();
}

void SockmapForwarder::stop() {
    if (stopped_) {
        return;
    }
    stopped_ = true;
    stop_.store(true);
    if (thread_.joinable()) {
        thread_.join();
    }
    program_.unpair(front_fd_, back_fd_);
}

bool SockmapForwarder::wait_finished(std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!finished_.load() && !loop_done_.load() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return finished_.load();
}

DirectionReport SockmapForwarder::report(int direction) const {
    std::lock_guard lock(mutex_);
    return directions_[direction].report;
}

std::string SockmapForwarder::error() const {
    std::lock_guard lock(mutex_);
    return error_;
}

void SockmapForwarder::fail(const std::string& message) {
    std::lock_guard lock(mutex_);
    if (error_.empty()) {
        error_ = message;
    }
}

// Writes what is pending into dst without blocking; reports each write in `copied`, which is
// what lets the verdict redirect again once everything passed is copied.
bool SockmapForwarder::flush(Direction& direction) {
    while (direction.pending_offset < direction.pending.size()) {
        const ssize_t n = ::send(direction.dst, direction.pending.data() + direction.pending_offset,
                                 direction.pending.size() - direction.pending_offset,
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                return false;
            }
            fail(std::string("copy send: ") + std::strerror(errno));
            return false;
        }
        direction.pending_offset += static_cast<std::size_t>(n);
        direction.copied += static_cast<std::uint64_t>(n);
        {
            std::lock_guard lock(mutex_);
            direction.report.copied_bytes += static_cast<std::uint64_t>(n);
        }
        if (auto set = program_.set_copied(direction.src_cookie, direction.copied); !set) {
            fail("set_copied: " + set.error().message);
            return false;
        }
    }
    direction.pending.clear();
    direction.pending_offset = 0;
    return true;
}

bool SockmapForwarder::peek_commit(Direction& direction, std::uint64_t available) {
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(kPeekMax, available));
    if (scratch_.size() < want) {
        scratch_.resize(want);
    }
    const ssize_t n = ::recv(direction.src, scratch_.data(), want, MSG_PEEK | MSG_DONTWAIT);
    if (n <= 0) {
        if (n == 0) {
            std::lock_guard lock(mutex_);
            direction.report.eof_seen = true;
        } else if (errno != EAGAIN && errno != EINTR) {
            fail(std::string("copy peek: ") + std::strerror(errno));
        }
        return false;
    }
    const ssize_t written = ::send(direction.dst, scratch_.data(), static_cast<std::size_t>(n),
                                   MSG_DONTWAIT | MSG_NOSIGNAL);
    if (written < 0) {
        if (errno == EAGAIN || errno == EINTR) {
            direction.waiting_dst = true;
        } else {
            fail(std::string("copy send: ") + std::strerror(errno));
        }
        return false;
    }
    direction.copied += static_cast<std::uint64_t>(written);
    if (auto set = program_.set_copied(direction.src_cookie, direction.copied); !set) {
        fail("set_copied: " + set.error().message);
        return false;
    }
    // Only now take the bytes off the source: its window reopens after the commit.
    std::size_t consumed = 0;
    while (consumed < static_cast<std::size_t>(written)) {
        const ssize_t got = ::recv(direction.src, scratch_.data(),
                                   static_cast<std::size_t>(written) - consumed, MSG_DONTWAIT);
        if (got <= 0) {
            fail("copy consume: the peeked bytes went missing");
            return false;
        }
        consumed += static_cast<std::size_t>(got);
    }
    {
        std::lock_guard lock(mutex_);
        direction.report.copied_bytes += static_cast<std::uint64_t>(written);
    }
    if (written < n) {
        direction.waiting_dst = true;
        return false;
    }
    return true;
}

void SockmapForwarder::service(Direction& direction, short src_revents) {
    if (options_.naive_eof && (src_revents & (POLLRDHUP | POLLHUP)) != 0 &&
        !direction.report.eof_propagated) {
        // The unsafe way: the FIN goes out now, whatever still waits on dst's psock queue.
        ::shutdown(direction.dst, SHUT_WR);
        std::lock_guard lock(mutex_);
        direction.report.eof_seen = true;
        direction.report.eof_propagated = true;
    }
    if (!flush(direction)) {
        return;
    }
    direction.spurious_wakeup = false;
    direction.waiting_dst = false;
    bool copied_something = false;
    // The plane's copy decisions (plane/sockmap_steps.h). Here the passed bytes are read only
    // once the sink absorbed the redirects before them, so "holding" means the verdict passed
    // bytes not copied yet, and "take" means there are none. Nothing is in hand between two
    // chunks, so the bound on a service's chunks is the loop's own.
    for (int round = 0; round < kRoundsPerService; ++round) {
        auto link = program_.link_state(direction.src_cookie);
        if (!link) {
            fail("link_state: " + link.error().message);
            return;
        }
        plane::CopyObservation seen;
        seen.holding = link->passed > direction.copied;
        seen.rounds = round;
        bool send_now = false;
        bool done = false;  // nothing passed, or this service's chunks are done
        while (!send_now && !done) {
            switch (plane::copy_step(seen, kRoundsPerService)) {
                case plane::CopyStep::take:
                    direction.waiting_absorb = false;
                    direction.in_episode = false;
                    done = true;
                    break;
                case plane::CopyStep::yield: done = true; break;
                case plane::CopyStep::check_absorbed: {
                    // Asked before every chunk: the verdict may have redirected again between
                    // two episodes. While passing lasts it is cheap (dst's counters include our
                    // own copies) and link->redirected is final.
                    auto absorbed = plane::redirects_absorbed(
                        direction.dst, *direction.dst_baseline, link->redirected, direction.copied);
                    if (!absorbed) {
                        fail(absorbed.error().message);
                        return;
                    }
                    seen.absorbed = *absorbed;
                    break;
                }
                case plane::CopyStep::check_sink:
                    seen.sink_broken = sink_broken(direction.dst);
                    break;
                case plane::CopyStep::wait: {
                    direction.waiting_absorb = true;
                    std::lock_guard lock(mutex_);
                    ++direction.report.absorb_waits;
                    return;
                }
                case plane::CopyStep::abort:
                    fail("copy: the destination can take nothing more");
                    return;
                case plane::CopyStep::send: send_now = true; break;
            }
        }
        if (done) {
            break;
        }
        direction.waiting_absorb = false;
        if (!direction.in_episode) {
            direction.in_episode = true;
            std::lock_guard lock(mutex_);
            ++direction.report.copy_episodes;
        }
        if (options_.peek_commit) {
            if (!peek_commit(direction, link->passed - direction.copied)) {
                break;
            }
            copied_something = true;
            continue;
        }
        // Never read past what the verdict passed: anything else is not accounted for.
        const auto want = static_cast<std::size_t>(
            std::min<std::uint64_t>(kCopyChunk, link->passed - direction.copied));
        direction.pending.resize(want);
        const ssize_t n = ::recv(direction.src, direction.pending.data(), want, MSG_DONTWAIT);
        if (n <= 0) {
            direction.pending.clear();
            if (n == 0) {
                std::lock_guard lock(mutex_);
                direction.report.eof_seen = true;
            } else if (errno != EAGAIN && errno != EINTR) {
                fail(std::string("copy recv: ") + std::strerror(errno));
            }
            break;
        }
        direction.pending.resize(static_cast<std::size_t>(n));
        copied_something = true;
        if (!flush(direction)) {
            return;
        }
    }
    if ((src_revents & POLLIN) != 0 && !copied_something && !direction.report.eof_seen &&
        (src_revents & POLLRDHUP) == 0) {
        // Readable, yet nothing passed: bytes still on their way through the verdict.
        direction.spurious_wakeup = true;
    }
    if ((src_revents & (POLLRDHUP | POLLHUP)) != 0) {
        std::lock_guard lock(mutex_);
        direction.report.eof_seen = true;
    }
    if (!direction.report.eof_seen || direction.report.eof_propagated) {
        return;
    }
    if (options_.naive_eof) {
        return;
    }
    // The plane's EOF decisions (plane/sockmap_steps.h). A late pass needs nothing here: every
    // service copies whatever the verdict passed.
    plane::EofObservation seen;
    for (;;) {
        switch (plane::eof_step(seen)) {
            case plane::EofStep::check_may: {
                auto may = plane::eof_may_propagate(direction.src, *direction.src_baseline,
                                                    direction.dst, *direction.dst_baseline);
                if (!may) {
                    fail(may.error().message);
                    return;
                }
                seen.may_propagate = *may && direction.pending.empty();
                break;
            }
            case plane::EofStep::propagate: {
                ::shutdown(direction.dst, SHUT_WR);
                std::lock_guard lock(mutex_);
                direction.report.eof_propagated = true;
                return;
            }
            case plane::EofStep::check_progress: {
                const auto now = std::chrono::steady_clock::now();
                auto absorbed = plane::bytes_absorbed(direction.dst, *direction.dst_baseline);
                seen.progressed = absorbed && *absorbed != direction.last_absorbed;
                if (*seen.progressed || direction.report.eof_checks == 0) {
                    direction.last_absorbed = absorbed ? *absorbed : 0;
                    direction.last_progress = now;
                }
                seen.stalled = now - direction.last_progress > plane::kNoProgressLimit;
                break;
            }
            case plane::EofStep::check_sink: seen.sink_broken = sink_broken(direction.dst); break;
            case plane::EofStep::abort_sink:
                fail("eof: the destination can take nothing more");
                return;
            case plane::EofStep::abort_stalled: fail("eof: the destination took nothing"); return;
            case plane::EofStep::copy_late_pass:
            case plane::EofStep::wait: {
                std::lock_guard lock(mutex_);
                ++direction.report.eof_checks;
                return;
            }
        }
    }
}

void SockmapForwarder::run() {
    while (!stop_.load()) {
        pollfd fds[2] = {{front_fd_, 0, 0}, {back_fd_, 0, 0}};
        bool tick = false;
        for (int d = 0; d < 2; ++d) {
            Direction& direction = directions_[d];
            pollfd& src = fds[d];  // front for client->backend, back for the other
            pollfd& dst = fds[1 - d];
            if (!direction.pending.empty() || direction.waiting_dst) {
                dst.events |= POLLOUT;
            } else if (direction.report.eof_seen) {
                tick = tick || !direction.report.eof_propagated;
            } else if (direction.waiting_absorb || direction.spurious_wakeup) {
                tick = true;
            } else {
                src.events |= POLLIN | POLLRDHUP;
            }
            if (options_.naive_eof && !direction.report.eof_propagated) {
                src.events |= POLLRDHUP;  // noticed at once, whatever else is going on
            }
        }
        const int ready = ::poll(fds, 2, tick ? options_.tick_ms : 50);
        if (ready < 0 && errno != EINTR) {
            fail(std::string("poll: ") + std::strerror(errno));
            return;
        }
        for (int d = 0; d < 2; ++d) {
            service(directions_[d], fds[d].revents);
        }
        if (!error().empty()) {
            return;
        }
        if (directions_[0].report.eof_propagated && directions_[1].report.eof_propagated) {
            finished_.store(true);
            return;
        }
    }
}

}  // namespace splicer::test
