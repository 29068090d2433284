// The probing state: peek at what the client sent (never consuming it), ask the router, and
// wait for more bytes, the client's EOF or the probe timeout.

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <span>

#include "daemon/event_loop.h"
#include "daemon/proxy_header_send.h"
#include "net/proxy_header_parse.h"
#include "net/sockets.h"
#include "splicer/log.h"

namespace splicer::daemon {

using Op = ConnectionOp;

namespace {

std::string join(const std::vector<std::string>& items) {
    std::string joined;
    for (const std::string& item : items) {
        joined += (joined.empty() ? "" : ",") + item;
    }
    return joined;
}

// Linux 6.9 gave TCP sockets SO_PEEK_OFF: each MSG_PEEK then starts where the previous one
// ended (here: past the `peeked` bytes already copied), so a peek copies only the bytes that
// arrived since. Earlier kernels refuse it (EOPNOTSUPP) and every peek starts at the head of
// the queue.
bool enable_peek_offset(int fd, std::size_t peeked) {
    // What the kernel answered once holds for every socket: no retry per wait where it refused.
    static std::atomic<bool> refused{false};
    if (refused.load(std::memory_order_relaxed)) {
        return false;
    }
    const int start = static_cast<int>(peeked);
    if (::setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &start, sizeof(start)) == 0) {
        return true;
    }
    refused.store(true, std::memory_order_relaxed);
    return false;
}

void disable_peek_offset(int fd) {
    const int off = -1;
    ::setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off));
}

// Adds the bytes queued on the client past those already in `peeked` (up to the probe cap),
// never consuming them. Returns how many were added (0: nothing new), or -errno. One recv
// into the loop's probe-sized `scratch`, which takes whatever is queued: no SIOCINQ first to
// size the copy (a syscall per look, two per connection, for a number the peek returns).
ssize_t peek_new(Connection& connection, std::span<std::byte> scratch) {
    const int fd = connection.client.get();
    RoutingState& probe = *connection.routing;
    const std::size_t have = probe.peeked.size();
    if (have >= scratch.size()) {
        return 0;  // at the cap: the router decides on what it has
    }
    // With the peek offset the kernel skips what was peeked before; without it the whole
    // queue is copied again (fewer times: the loop wakes only once `needed` bytes are there).
    const std::size_t from = probe.peek_offset ? have : 0;
    const ssize_t n = ::recv(fd, scratch.data() + from, scratch.size() - from,
                             MSG_PEEK | MSG_DONTWAIT);
    const int error = errno;
    ++probe.peeks;
    if (n < 0) {
        return error == EAGAIN || error == EWOULDBLOCK ? 0 : -error;
    }
    probe.peek_bytes += static_cast<std::uint64_t>(n);
    const std::size_t total = from + static_cast<std::size_t>(n);
    if (total <= have) {
        return 0;
    }
    probe.peeked.insert(probe.peeked.end(), scratch.begin() + static_cast<std::ptrdiff_t>(have),
                        scratch.begin() + static_cast<std::ptrdiff_t>(total));
    return static_cast<ssize_t>(total - have);
}

}  // namespace

void EventLoop::start_probing(Connection& connection) {
    connection.state = State::probing;
    connection.routing = std::make_unique<RoutingState>();
    // Port 80 gets here only to read a PROXY header: its header_timeout bounds that.
    const auto timeout = listeners_[connection.listener].http
                             ? std::chrono::duration_cast<std::chrono::milliseconds>(
                                   config_->http->limits.header_timeout)
                             : config_->probe_timeout;
    connection.routing->timeout.tv_sec = timeout.count() / 1000;
    connection.routing->timeout.tv_nsec = (timeout.count() % 1000) * 1'000'000;
    // A client sends its first bytes right behind the handshake's last ACK, so under load
    // they are often queued by the time the accept is handled: look at them at once. A
    // decision now costs no poll, no probe timeout and its removal, and no peek-offset
    // set-up and undo (arm_probe_poll makes those only when more bytes must come). The
    // look's own peek says whether anything is there (nothing: it arms the poll).
    look_at_client(connection, 0);
}

void EventLoop::arm_probe_poll(Connection& connection) {
    if (connection.routing->waits++ == 0) {
        // The first wait: the probe deadline starts (still within the accept's callback, so
        // it counts from the accept).
        io_uring_sqe* sqe = sqe_for(connection, Op::probe_timeout, 0);
        io_uring_prep_timeout(sqe, &connection.routing->timeout, 0, 0);
        connection.probe_timeout_armed = true;
    }
    // From the first wait with bytes peeked, each peek copies only new bytes. Not before:
    // with nothing peeked a peek starts at the head anyway, and a client whose first look
    // found nothing usually sends its whole first flight at once (a ClientHello in one
    // segment): its one wait then costs neither the offset's set-up nor its undo (two
    // setsockopt calls per connection).
    if (!connection.routing->peek_offset && !connection.routing->peeked.empty()) {
        connection.routing->peek_offset =
            enable_peek_offset(connection.client.get(), connection.routing->peeked.size());
    }
    // poll(POLLIN) honours SO_RCVLOWAT: wake only once the router's `needed` bytes are
    // queued (peeked bytes stay queued), never before more than what was peeked. A client
    // trickling bytes costs one wake-up per arrival, not a busy loop; a ClientHello whose
    // length is known costs one wake-up per TLS record, not one per TCP segment. (Tcp also
    // wakes a reader early when its receive window is about to close: that wake-up just
    // peeks what is new.)
    const int low_water = static_cast<int>(
        std::max(connection.routing->peeked.size() + 1, connection.routing->needed));
    if (low_water != connection.routing->receive_low_water) {
        net::set_receive_low_water(connection.client.get(), low_water);
        connection.routing->receive_low_water = low_water;
    }
    io_uring_sqe* sqe = sqe_for(connection, Op::probe_poll, 0);
    io_uring_prep_poll_add(sqe, connection.client.get(), POLLIN | POLLRDHUP);
    connection.probe_poll_armed = true;
}

void EventLoop::on_probe_poll(Connection& connection, int result) {
    connection.probe_poll_armed = false;
    if (connection.state != State::probing) {
        return;
    }
    if (result < 0) {
        close_connection(connection, "probe_error");
        return;
    }
    look_at_client(connection, static_cast<unsigned>(result));
}

void EventLoop::look_at_client(Connection& connection, unsigned events) {
    const bool ended = (events & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
    const ssize_t added = peek_new(connection, peek_scratch_);
    if (added < 0) {
        close_connection(connection, "client_error");
        return;
    }
    if (connection.routing->peeked.empty() && ended) {
        close_connection(connection, "client_closed");
        return;
    }
    if (added == 0 && !ended) {
        arm_probe_poll(connection);  // an early wake-up: nothing new to decide on
        return;
    }
    if (connection.awaiting_proxy_header) {
        const HeaderStep step = read_proxy_header(connection, ended);
        if (step == HeaderStep::wait) {
            arm_probe_poll(connection);
        }
        if (step != HeaderStep::done) {
            return;
        }
        if (listeners_[connection.listener].http) {
            stop_probe_operations(connection);
            connection.routing.reset();  // the exchange reads the stream itself
            start_http(connection);
            return;
        }
        if (connection.routing->peeked.empty()) {
            // Only the header so far: the client's first bytes are still to come.
            if (ended) {
                close_connection(connection, "client_closed");
            } else {
                arm_probe_poll(connection);
            }
            return;
        }
    }
    const route::Decision decision = router_.decide(connection.routing->peeked);
    if (decision.verdict != probe::Verdict::need_more) {
        apply_decision(connection, decision, "probed");
        return;
    }
    if (ended) {
        // The client half-closed while still undecided: nothing more will come.
        apply_decision(connection, router_.decide_on_timeout(connection.routing->peeked),
                       "client_eof");
        return;
    }
    connection.routing->needed = decision.needed;
    arm_probe_poll(connection);
}

void EventLoop::on_probe_timeout(Connection& connection, int result) {
    connection.probe_timeout_armed = false;
    if (connection.state != State::probing || result != -ETIME) {
        return;  // removed (-ECANCELED / -ENOENT races), or the decision came first
    }
    if (connection.awaiting_proxy_header) {
        // Bytes may have completed the header since the last look; else it was too slow.
        if (peek_new(connection, peek_scratch_) < 0) {
            close_connection(connection, "client_error");
            return;
        }
        if (net::parse_proxy_header(connection.routing->peeked).status ==
            net::ProxyParseStatus::need_more) {
            count_proxy_rejection(ProxyRejection::timeout, connection.peer_address(),
                                  "no complete PROXY header within the timeout");
            close_connection(connection, "proxy_header_timeout");
            return;
        }
        if (read_proxy_header(connection, false) != HeaderStep::done) {
            return;  // invalid: counted and closed
        }
        if (listeners_[connection.listener].http) {
            stop_probe_operations(connection);
            connection.routing.reset();  // the exchange reads the stream itself
            start_http(connection);
            return;
        }
    }
    ++counters_.probe_timeouts;
    if (peek_new(connection, peek_scratch_) < 0) {
        connection.routing->peeked.clear();
    }
    // Bytes short of `needed` may have arrived since the last look and settle it (a
    // malformed hello, say, whose refusal waited for its announced length): the decision
    // they make wins, as it would have without the wait; else the timeout rules.
    route::Decision decision = router_.decide(connection.routing->peeked);
    if (decision.verdict == probe::Verdict::need_more) {
        decision = router_.decide_on_timeout(connection.routing->peeked);
    }
    log::info("probe_timeout", {{"conn", std::to_string(connection.id)},
                                {"client", net::to_string(connection.client_address)},
                                {"bytes", std::to_string(connection.routing->peeked.size())},
                                {"outcome", decision.rule ? "on-timeout" : "close"}});
    apply_decision(connection, decision, "timeout");
}

void EventLoop::stop_probe_operations(Connection& connection) {
    if (connection.probe_timeout_armed) {
        remove_pending(connection, Op::probe_timeout);
        connection.probe_timeout_armed = false;
    }
    if (connection.probe_poll_armed) {
        remove_pending(connection, Op::probe_poll);
        connection.probe_poll_armed = false;
    }
    if (connection.routing->receive_low_water != 1) {
        net::set_receive_low_water(connection.client.get(), 1);
        connection.routing->receive_low_water = 1;
    }
    if (connection.routing->peek_offset) {
        // The planes read the stream from its start (or splice it): no offset left behind.
        disable_peek_offset(connection.client.get());
        connection.routing->peek_offset = false;
    }
}

void EventLoop::apply_decision(Connection& connection, const route::Decision& decision,
                               std::string_view why) {
    // The probe's own operations end here, so the slot never waits on them.
    stop_probe_operations(connection);
    if (!decision.rule) {
        ++counters_.no_route;
        log::info("no_route",
                  {{"conn", std::to_string(connection.id)},
                   {"client", net::to_string(connection.client_address)},
                   {"reason", decision.reason.empty() ? std::string(why) : decision.reason},
                   {"bytes", std::to_string(connection.routing->peeked.size())}});
        close_connection(connection, "no_route");
        return;
    }
    connection.rule = decision.rule;
    const config::Rule& rule = config_->rules[*decision.rule];
    connection.protocol = rule.name;
    connection.proxy_protocol = rule.proxy_protocol;
    connection.transparent = config::transparent_for(*config_, rule);
    if (decision.hello) {
        connection.routing->sni = decision.hello->server_name;
        connection.routing->alpn = join(decision.hello->alpn_protocols);
        connection.routing->proxy_alpn = proxy_alpn(*decision.hello, rule);
    }
    connection.routing->peeked.clear();
    connection.routing->peeked.shrink_to_fit();
    if (rule.terminate) {
        // splicer answers the ClientHello itself: the probe only peeked, so the whole hello
        // is still queued on the socket for the TLS transport's first recv.
        leave_probing(connection);
        connection.series = rule_series_.for_rule(*decision.rule);
        log::info("routed", {{"conn", std::to_string(connection.id)},
                             {"client", net::to_string(connection.client_address)},
                             {"protocol", connection.protocol},
                             {"sni", connection.routing->sni},
                             {"alpn", connection.routing->alpn},
                             {"rule", std::to_string(*decision.rule)},
                             {"backend", "-"},
                             {"plane", "tls-terminate"},
                             {"probe_peeks", std::to_string(connection.routing->peeks)},
                             {"probe_peek_bytes", std::to_string(connection.routing->peek_bytes)},
                             {"probe_waits", std::to_string(connection.routing->waits)}});
        // Its last use: an idle terminated connection keeps no probing state.
        connection.routing.reset();
        start_terminated(connection);
        return;
    }
    start_connect(connection);
}

void EventLoop::log_routed(const Connection& connection, std::string_view plane) const {
    // A 101's routed line comes after the routing state is gone (port 80 without a PROXY
    // header never had one): no SNI, ALPN nor probing to report then.
    const RoutingState none;
    const RoutingState& routing = connection.routing ? *connection.routing : none;
    log::info("routed", {{"conn", std::to_string(connection.id)},
                         {"client", net::to_string(connection.client_address)},
                         {"protocol", connection.protocol},
                         {"sni", routing.sni},
                         {"alpn", routing.alpn},
                         {"rule", std::to_string(connection.rule.value_or(0))},
                         {"backend", net::to_string(connection.backend_address)},
                         {"plane", std::string(plane.empty() ? plane_.name() : plane)},
                         {"probe_peeks", std::to_string(routing.peeks)},
                         {"probe_peek_bytes", std::to_string(routing.peek_bytes)},
                         {"probe_waits", std::to_string(routing.waits)}});
}

}  // namespace splicer::daemon
