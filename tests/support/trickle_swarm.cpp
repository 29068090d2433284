#include "support/trickle_swarm.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
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
    Clock::time_point open_at;    // when to (re)connect, while closed
    Clock::time_point next_send;  // while open
    std::size_t next_byte = 0;
    bool replied = false;
};

void open_client(TrickleClient& client, const TrickleTarget& target, TrickleCounts& counts,
                 Clock::time_point now) {
    ++counts.connects;
    try {
        client.fd = socket_bound_to(*client.source, true);
    } catch (const std::runtime_error&) {
        ++counts.connect_failures;  // e.g. out of ports or fds: try again shortly
        client.open_at = now + kRetryPause;
        return;
    }
    const SocketAddress server = loopback_address(target.port);
    if (::connect(client.fd.get(), server.get(), server.length) != 0 && errno != EINPROGRESS) {
        ++counts.connect_failures;
        client.fd.reset();
        client.open_at = now + kRetryPause;
        return;
    }
    client.next_send = now;
    client.next_byte = 0;
    client.replied = false;
}

// The server ended the connection (or it failed): count it and reconnect at once.
void drop_client(TrickleClient& client, TrickleCounts& counts, Clock::time_point now) {
    if (client.next_byte == 0 && !client.replied) {
        ++counts.connect_failures;  // nothing went out: refused, not cut
        client.open_at = now + kRetryPause;
    } else {
        ++counts.cut;
        client.open_at = now;
    }
    client.fd.reset();
}

void read_replies(TrickleClient& client, const TrickleTarget& target, TrickleCounts& counts,
                  Clock::time_point now) {
    char buffer[4096];
    for (;;) {
        const ssize_t got = ::recv(client.fd.get(), buffer, sizeof(buffer), MSG_DONTWAIT);
        if (got > 0) {
            if (!client.replied && !target.expected_answer.empty() &&
                std::string_view(buffer, static_cast<std::size_t>(got))
                    .starts_with(target.expected_answer)) {
                ++counts.answered;
            }
            client.replied = true;
            continue;
        }
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        drop_client(client, counts, now);  // EOF, reset or refused
        return;
    }
}

void send_next_byte(TrickleClient& client, const TrickleTarget& target, TrickleCounts& counts,
                    std::chrono::milliseconds interval, Clock::time_point now) {
    if (now < client.next_send || client.next_byte >= target.opening.size()) {
        return;
    }
    const ssize_t sent = ::send(client.fd.get(), target.opening.data() + client.next_byte, 1,
                                MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent == 1) {
        ++counts.bytes_sent;
        ++client.next_byte;
        client.next_send = now + interval;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN) {
        drop_client(client, counts, now);
    }  // else still connecting (or the buffer is full): try again on the next round
}

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
    std::vector<TrickleClient> clients;
    for (std::size_t t = 0; t < targets_.size(); ++t) {
        for (const std::string& source : targets_[t].sources) {
            for (int i = 0; i < targets_[t].clients_per_source; ++i) {
                clients.push_back({.target = t, .source = &source});
            }
        }
    }
    // Ramp up over the first second so the listen backlogs are not flooded in one instant.
    for (std::size_t i = 0; i < clients.size(); ++i) {
        clients[i].open_at = start + std::chrono::microseconds(1'000'000 * i / clients.size());
    }
    std::vector<pollfd> waiting;
    std::vector<std::size_t> waiting_client;
    while (!stop_ && Clock::now() - start < duration_) {
        auto now = Clock::now();
        waiting.clear();
        waiting_client.clear();
        for (std::size_t i = 0; i < clients.size(); ++i) {
            TrickleClient& client = clients[i];
            if (!client.fd && now >= client.open_at) {
                open_client(client, targets_[client.target], counts_[client.target], now);
            }
            if (client.fd) {
                waiting.push_back({.fd = client.fd.get(), .events = POLLIN, .revents = 0});
                waiting_client.push_back(i);
            }
        }
        ::poll(waiting.data(), waiting.size(), 10);
        now = Clock::now();
        for (std::size_t w = 0; w < waiting.size(); ++w) {
            TrickleClient& client = clients[waiting_client[w]];
            const TrickleTarget& target = targets_[client.target];
            TrickleCounts& counts = counts_[client.target];
            if (waiting[w].revents != 0) {
                read_replies(client, target, counts, now);
            }
            if (client.fd) {
                send_next_byte(client, target, counts, interval_, now);
            }
        }
    }
    finished_ = true;  // the clients (and their sockets) go when this returns
}

}  // namespace splicer::test
