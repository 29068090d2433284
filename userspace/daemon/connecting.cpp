// The connecting state: a non-blocking connect to the rule's backend, bounded by a linked
// timeout (connect_timeout); success hands the pair to the data plane.

#include <cerrno>
#include <cstring>

#include "daemon/event_loop.h"
#include "daemon/proxy_header_send.h"
#include "net/sockets.h"
#include "net/transparent_bind.h"
#include "splicer/flow_accounting.h"
#include "splicer/log.h"

namespace splicer::daemon {

using Op = ConnectionOp;

void EventLoop::start_connect(Connection& connection) {
    leave_probing(connection);
    connection.state = State::connecting;
    connection.backend_address = backends_[*connection.rule];
    // Kept by the connection: a reload during the connect may renumber the rules.
    connection.series = rule_series_.for_rule(*connection.rule);
    auto socket = net::stream_socket_for(connection.backend_address);
    if (socket && connection.transparent) {
        // From the client's own address and port: the backend sees the client, not splicer.
        if (Result<void> bound = net::bind_to_client(socket->get(), connection.client_address);
            !bound) {
            socket = bound.error();
        }
    }
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
    // The probe's timeout, submitted long before (a completion brought the decision), is
    // done with the field.
    connection.routing->timeout.tv_sec = config_->connect_timeout.count();
    connection.routing->timeout.tv_nsec = 0;
    io_uring_sqe* connect = sqe_for(connection, Op::connect, 0);
    io_uring_prep_connect(connect, connection.backend.get(), connection.backend_address.get(),
                          connection.backend_address.length);
    connect->flags |= IOSQE_IO_LINK;
    io_uring_sqe* timeout = sqe_for(connection, Op::connect_timeout, 0);
    io_uring_prep_link_timeout(timeout, &connection.routing->timeout, 0);
}

void EventLoop::on_connect(Connection& connection, int result) {
    if (connection.state != State::connecting) {
        return;
    }
    if (result < 0) {
        // The linked timeout cancels the connect: -ECANCELED means it took too long.
        const std::string error = connection.transparent ? net::transparent_connect_error(result)
                                  : result == -ECANCELED ? std::string("timeout")
                                                         : std::strerror(-result);
        ++counters_.backend_failures;
        rule_series_.count_backend_failure(connection.series);
        log::warning("backend_failed", {{"conn", std::to_string(connection.id)},
                                        {"backend", net::to_string(connection.backend_address)},
                                        {"error", error}});
        close_connection(connection, "backend_failed");
        return;
    }
    std::size_t header_bytes = 0;
    if (connection.proxy_protocol != 0) {
        const std::optional<std::size_t> written = write_proxy_header(connection);
        if (!written) {
            return;
        }
        header_bytes = *written;
    }
    // Routed and connected: the routing state's last use was the PROXY header's.
    connection.routing.reset();
    // The client's bytes were only peeked, unless a PROXY header was consumed from it (then
    // the plane reads the kernel's count: recv() also skips an urgent byte in what it reads).
    if (listeners_[connection.listener].proxy_protocol) {
        start_plane(connection);
    } else {
        start_plane(connection, plane::untouched_pair_baselines(header_bytes));
    }
}

std::optional<std::size_t> EventLoop::write_proxy_header(Connection& connection) {
    // Here, after the connect and before the plane starts, the header precedes every client
    // byte on every plane (the client's bytes are still queued on its socket, only peeked).
    const net::ProxyTlvs tlvs{.alpn = connection.routing->proxy_alpn,
                              .authority = proxy_authority(connection.routing->sni)};
    Result<std::string> header = proxy_header_for(
        static_cast<net::ProxyVersion>(connection.proxy_protocol), connection.client_address,
        connection.client.get(), connection.reached_address(), tlvs);
    Result<void> sent = header ? send_proxy_header(connection.backend.get(), header.value())
                               : Result<void>(header.error());
    if (sent) {
        return header->size();
    }
    ++counters_.backend_failures;
    log::warning("backend_failed", {{"conn", std::to_string(connection.id)},
                                    {"backend", net::to_string(connection.backend_address)},
                                    {"error", sent.error().message}});
    close_connection(connection, "backend_failed");
    return std::nullopt;
}

}  // namespace splicer::daemon
