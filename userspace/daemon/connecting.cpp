// The connecting state: a non-blocking connect to the rule's backend, bounded by a linked
// timeout (connect_timeout); success hands the pair to the data plane.

#include <cerrno>
#include <cstring>

#include "daemon/event_loop.h"
#include "net/sockets.h"
#include "splicer/log.h"

namespace splicer::daemon {

using uring::Op;

void EventLoop::start_connect(Connection& connection) {
    leave_probing(connection);
    connection.state = State::connecting;
    connection.backend_address = backends_[*connection.rule];
    // Kept by the connection: a reload during the connect may renumber the rules.
    connection.series = rule_series_.for_rule(*connection.rule);
    auto socket = net::stream_socket_for(connection.backend_address);
    if (!socket) {
        ++counters_.backend_failures;
        rule_series_.count_backend_failure(connection.series);
        log::error("backend_failed", {{"conn", std::to_string(connection.id)},
                                      {"backend", net::to_string(connection.backend_address)},
                                      {"error", socket.error().message}});
        close_connection(connection, "backend_failed");
        return;
    }
    connection.backend = std::move(socket).value();
    ++counters_.routed;
    // Under the daemon's plane; a pair the sockhash refuses later is in sockmap_fallbacks.
    rule_series_.count_routed(connection.series, plane_label_);
    log_routed(connection);
    connection.connect_timeout.tv_sec = config_->connect_timeout.count();
    connection.connect_timeout.tv_nsec = 0;
    io_uring_sqe* connect = sqe_for(connection, Op::connect, 0);
    io_uring_prep_connect(connect, connection.backend.get(), connection.backend_address.get(),
                          connection.backend_address.length);
    connect->flags |= IOSQE_IO_LINK;
    io_uring_sqe* timeout = sqe_for(connection, Op::connect_timeout, 0);
    io_uring_prep_link_timeout(timeout, &connection.connect_timeout, 0);
}

void EventLoop::on_connect(Connection& connection, int result) {
    if (connection.state != State::connecting) {
        return;
    }
    if (result < 0) {
        // The linked timeout cancels the connect: -ECANCELED means it took too long.
        const std::string error =
            result == -ECANCELED ? std::string("timeout") : std::strerror(-result);
        ++counters_.backend_failures;
        rule_series_.count_backend_failure(connection.series);
        log::warning("backend_failed", {{"conn", std::to_string(connection.id)},
                                        {"backend", net::to_string(connection.backend_address)},
                                        {"error", error}});
        close_connection(connection, "backend_failed");
        return;
    }
    connection.state = State::spliced;
    plane_.start(connection, *this);
}

}  // namespace splicer::daemon
