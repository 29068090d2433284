// The probing state: peek at what the client sent (never consuming it), ask the router, and
// wait for more bytes, the client's EOF or the probe timeout.

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "daemon/event_loop.h"
#include "net/sockets.h"
#include "splicer/log.h"

namespace splicer::daemon {

using uring::Op;

namespace {

std::string join(const std::vector<std::string>& items) {
    std::string joined;
    for (const std::string& item : items) {
        joined += (joined.empty() ? "" : ",") + item;
    }
    return joined;
}

// Re-reads everything queued on the client (up to the probe cap) into `peeked`.
// Returns the recv result: > 0 bytes, 0 EOF with nothing queued, < 0 -errno.
ssize_t peek_all(Connection& connection) {
    const std::size_t queued = net::bytes_readable(connection.client.get());
    const std::size_t want =
        std::min(std::max(queued, connection.peeked.size() + 1), tls::kMaxProbeBytes);
    connection.peeked.resize(want);
    const ssize_t n = ::recv(connection.client.get(), connection.peeked.data(), want,
                             MSG_PEEK | MSG_DONTWAIT);
    connection.peeked.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    return n < 0 ? -errno : n;
}

}  // namespace

void EventLoop::start_probing(Connection& connection) {
    connection.state = State::probing;
    const auto timeout = config_->probe_timeout;
    connection.probe_timeout.tv_sec = timeout.count() / 1000;
    connection.probe_timeout.tv_nsec = (timeout.count() % 1000) * 1'000'000;
    io_uring_sqe* sqe = sqe_for(connection, Op::probe_timeout, 0);
    io_uring_prep_timeout(sqe, &connection.probe_timeout, 0, 0);
    connection.probe_timeout_armed = true;
    arm_probe_poll(connection);
}

void EventLoop::arm_probe_poll(Connection& connection) {
    // poll(POLLIN) honours SO_RCVLOWAT: wake only when more than what was peeked is queued,
    // so a client trickling bytes costs one wake-up per arrival, not a busy loop.
    const int low_water = static_cast<int>(connection.peeked.size()) + 1;
    if (low_water != connection.receive_low_water) {
        net::set_receive_low_water(connection.client.get(), low_water);
        connection.receive_low_water = low_water;
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
    const auto events = static_cast<unsigned>(result);
    const ssize_t peeked = peek_all(connection);
    if (peeked == -EAGAIN) {
        arm_probe_poll(connection);
        return;
    }
    if (peeked < 0) {
        close_connection(connection, "client_error");
        return;
    }
    if (peeked == 0) {
        close_connection(connection, "client_closed");
        return;
    }
    const route::Decision decision = router_.decide(connection.peeked);
    if (decision.verdict != probe::Verdict::need_more) {
        apply_decision(connection, decision, "probed");
        return;
    }
    if ((events & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
        // The client half-closed while still undecided: nothing more will come.
        apply_decision(connection, router_.decide_on_timeout(connection.peeked), "client_eof");
        return;
    }
    arm_probe_poll(connection);
}

void EventLoop::on_probe_timeout(Connection& connection, int result) {
    connection.probe_timeout_armed = false;
    if (connection.state != State::probing || result != -ETIME) {
        return;  // removed (-ECANCELED / -ENOENT races), or the decision came first
    }
    ++counters_.probe_timeouts;
    if (peek_all(connection) < 0) {
        connection.peeked.clear();
    }
    const route::Decision decision = router_.decide_on_timeout(connection.peeked);
    log::info("probe_timeout", {{"conn", std::to_string(connection.id)},
                                {"client", net::to_string(connection.client_address)},
                                {"bytes", std::to_string(connection.peeked.size())},
                                {"outcome", decision.rule ? "on-timeout" : "close"}});
    apply_decision(connection, decision, "timeout");
}

void EventLoop::apply_decision(Connection& connection, const route::Decision& decision,
                               std::string_view why) {
    // The probe's own operations end here, so the slot never waits on them.
    if (connection.probe_timeout_armed) {
        remove_pending(connection, Op::probe_timeout);
        connection.probe_timeout_armed = false;
    }
    if (connection.probe_poll_armed) {
        remove_pending(connection, Op::probe_poll);
        connection.probe_poll_armed = false;
    }
    if (connection.receive_low_water != 1) {
        net::set_receive_low_water(connection.client.get(), 1);
        connection.receive_low_water = 1;
    }
    if (!decision.rule) {
        ++counters_.no_route;
        log::info("no_route", {{"conn", std::to_string(connection.id)},
                               {"client", net::to_string(connection.client_address)},
                               {"reason", decision.reason.empty() ? std::string(why)
                                                                  : decision.reason},
                               {"bytes", std::to_string(connection.peeked.size())}});
        close_connection(connection, "no_route");
        return;
    }
    connection.rule = decision.rule;
    connection.protocol = config_->rules[*decision.rule].name;
    if (decision.hello) {
        connection.sni = decision.hello->server_name;
        connection.alpn = join(decision.hello->alpn_protocols);
    }
    connection.peeked.clear();
    connection.peeked.shrink_to_fit();
    start_connect(connection);
}

void EventLoop::log_routed(const Connection& connection) const {
    log::info("routed", {{"conn", std::to_string(connection.id)},
                         {"client", net::to_string(connection.client_address)},
                         {"protocol", connection.protocol},
                         {"sni", connection.sni},
                         {"alpn", connection.alpn},
                         {"rule", std::to_string(connection.rule.value_or(0))},
                         {"backend", net::to_string(connection.backend_address)},
                         {"plane", std::string(plane_.name())}});
}

}  // namespace splicer::daemon
