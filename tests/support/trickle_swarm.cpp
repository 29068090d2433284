#include "support/trickle_swarm.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <deque>
#include <stdexcept>

#include "support/sockets.h"
#include "splicer/unique_fd.h"

namespace splicer::test {
namespace {

using Clock = std::chrono::steady_clock;

// A refused or failed connect is retried after this pause rather than at once (no spinning
// against a listener that is gone).
constexpr auto kRetryPause = std::chrono::milliseconds(100);

struct TrickleClient {
    std::size_t target = 0;
    const std::string* source = nullptr;
    UniqueFd fd;
    std::uint64_t generation = 0;  // bumped at every (re)connect: stale queue entries skip
    std::size_t next_byte = 0;
    bool replied = false;
};

// Clients waiting for a time: to (re)connect, or to send their next byte. Each client's next
// time is "now" or "now + a fixed pause", so a FIFO stays (nearly) in time order: no heap.
struct Due {
    Clock::time_point at;
    std::size_t client = 0;
    std::uint64_t generation = 0;
};

class Swarm {
public:
    Swarm(const std::vector<TrickleTarget>& targets, std::vector<TrickleCounts>& counts,
          std::chrono::milliseconds interval)
        : targets_(targets), counts_(counts), interval_(interval), epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
        if (!epoll_) {
            throw std::runtime_error("epoll_create1 failed");
        }
        for (std::size_t t = 0; t < targets.size(); ++t) {
            for (const std::string& source : targets[t].sources) {
                for (int i = 0; i < targets[t].clients_per_source; ++i) {
                    clients_.push_back({.target = t, .source = &source});
                }
            }
        }
        // Ramp up over the first second so the listen backlogs are not flooded in one instant.
        const auto start = Clock::now();
        for (std::size_t i = 0; i < clients_.size(); ++i) {
            to_open_.push_back(
                {start + std::chrono::microseconds(1'000'000 * i / clients_.size()), i, 0});
        }
    }

    // One round: replies read, due connects made, due bytes sent.
    void step() {
        epoll_event events[256];
        const int ready = ::epoll_wait(epoll_.get(), events, 256, 10);
        const auto now = Clock::now();
        for (int e = 0; e < ready; ++e) {
            TrickleClient& client = clients_[events[e].data.u64];
            if (client.fd) {
                read_replies(client, now);
            }
        }
        while (!to_open_.empty() && to_open_.front().at <= now) {
            const std::size_t index = to_open_.front().client;
            to_open_.pop_front();
            open(index, now);
        }
        while (!to_send_.empty() && to_send_.front().at <= now) {
            const Due due = to_send_.front();
            to_send_.pop_front();
            TrickleClient& client = clients_[due.client];
            if (client.fd && client.generation == due.generation) {
                send_next_byte(due.client, now);
            }
        }
    }

private:
    void open(std::size_t index, Clock::time_point now) {
        TrickleClient& client = clients_[index];
        TrickleCounts& counts = counts_[client.target];
        ++counts.connects;
        try {
            client.fd = socket_bound_to(*client.source, true);
        } catch (const std::runtime_error&) {
            ++counts.connect_failures;  // e.g. out of ports or fds: try again shortly
            to_open_.push_back({now + kRetryPause, index, 0});
            return;
        }
        const SocketAddress server = loopback_address(targets_[client.target].port);
        if (::connect(client.fd.get(), server.get(), server.length) != 0 && errno != EINPROGRESS) {
            ++counts.connect_failures;
            client.fd.reset();
            to_open_.push_back({now + kRetryPause, index, 0});
            return;
        }
        epoll_event interest{.events = EPOLLIN, .data = {.u64 = index}};
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, client.fd.get(), &interest);
        ++client.generation;
        client.next_byte = 0;
        client.replied = false;
        to_send_.push_back({now, index, client.generation});
    }

    // The server ended the connection (or it failed): count it and reconnect (closing the fd
    // also takes it out of the epoll set).
    void drop(std::size_t index, Clock::time_point now) {
        TrickleClient& client = clients_[index];
        TrickleCounts& counts = counts_[client.target];
        if (client.next_byte == 0 && !client.replied) {
            ++counts.connect_failures;  // nothing went out: refused, not cut
            to_open_.push_back({now + kRetryPause, index, 0});
        } else {
            ++counts.cut;
            to_open_.push_back({now, index, 0});
        }
        client.fd.reset();
    }

    void read_replies(TrickleClient& client, Clock::time_point now) {
        const TrickleTarget& target = targets_[client.target];
        char buffer[4096];
        for (;;) {
            const ssize_t got = ::recv(client.fd.get(), buffer, sizeof(buffer), MSG_DONTWAIT);
            if (got > 0) {
                if (!client.replied && !target.expected_answer.empty() &&
                    std::string_view(buffer, static_cast<std::size_t>(got))
                        .starts_with(target.expected_answer)) {
                    ++counts_[client.target].answered;
                }
                client.replied = true;
                continue;
            }
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                return;
            }
            drop(static_cast<std::size_t>(&client - clients_.data()), now);  // EOF, reset, refused
            return;
        }
    }

    void send_next_byte(std::size_t index, Clock::time_point now) {
        TrickleClient& client = clients_[index];
        const TrickleTarget& target = targets_[client.target];
        if (client.next_byte >= target.opening.size()) {
            return;  // all sent (never within the tests' bounds): wait for the server
        }
        const ssize_t sent = ::send(client.fd.get(), target.opening.data() + client.next_byte, 1,
                                    MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent == 1) {
            ++counts_[client.target].bytes_sent;
            ++client.next_byte;
            to_send_.push_back({now + interval_, index, client.generation});
        } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN) {
            // Still connecting (or the buffer is full): try again shortly.
            to_send_.push_back({now + std::chrono::milliseconds(10), index, client.generation});
        } else {
            drop(index, now);
        }
    }

    const std::vector<TrickleTarget>& targets_;
    std::vector<TrickleCounts>& counts_;
    std::chrono::milliseconds interval_;
    UniqueFd epoll_;
    std::vector<TrickleClient> clients_;
    std::deque<Due> to_open_;
    std::deque<Due> to_send_;
};

}  // namespace

TrickleSwarm::TrickleSwarm(std::vector<TrickleTarget> targets, std::chrono::milliseconds duration,
                           std::chrono::milliseconds interval)
    : targets_(std::move(targets)),
      duration_(duration),
      interval_(interval),
      counts_(targets_.size()),
      thread_([this] { run(); }) {}

TrickleSwarm::~TrickleSwarm() { finish(true); }

std::vector<TrickleCounts> TrickleSwarm::finish(bool stop_now) {
    if (stop_now) {
        stop_ = true;
    }
    if (thread_.joinable()) {
        thread_.join();
    }
    return counts_;
}

void TrickleSwarm::run() {
    const auto start = Clock::now();
    {
        Swarm swarm(targets_, counts_, interval_);
        while (!stop_ && Clock::now() - start < duration_) {
            swarm.step();
        }
    }  // every socket closed here
    finished_ = true;
}

}  // namespace splicer::test
