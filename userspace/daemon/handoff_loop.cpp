// EventLoop's handoff entry points (userspace/handoff/README.md): established connections
// exported from this loop, and adopted from another.

#include <liburing.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <span>
#include <string>

#include "daemon/event_loop.h"
#include "daemon/plane_handler.h"
#include "net/address.h"
#include "net/sockets.h"
#include "plane/flow_handoff.h"
#include "splicer/log.h"

namespace splicer::daemon {
namespace {

// `address` as a record carries it (family 0 for none).
handoff::ClientAddress record_address(const net::SocketAddress& address) {
    handoff::ClientAddress out;
    const net::AddressParts parts = net::parts_of(address);
    if (parts.size != 0) {
        out.family = parts.size == 4 ? 4 : 6;
        out.port = parts.port;
        out.address = parts.bytes;
    }
    return out;
}

// The client a PROXY header named, when it is not the socket's peer (handoff/record.h).
handoff::ClientAddress proxied_client_of(const Connection& connection) {
    const net::SocketAddress& client = connection.client_address;
    const net::SocketAddress& peer = connection.peer_address();
    if (client.length == peer.length &&
        std::memcmp(&client.storage, &peer.storage, client.length) == 0) {
        return {};
    }
    return record_address(client);
}

// A record's address (handoff::decode checked its family and bytes) as a socket address;
// `otherwise` when the record names none.
net::SocketAddress address_of(const handoff::ClientAddress& address,
                              const net::SocketAddress& otherwise) {
    const std::size_t size = address.family == 4 ? 4 : address.family == 6 ? 16 : 0;
    return net::address_from(std::span(address.address).first(size), address.port)
        .value_or(otherwise);
}

}  // namespace

void EventLoop::export_connections(std::function<void(handoff::ExportOutcome)> done) {
    if (export_done_) {
        done(handoff::ExportOutcome{.batch = {}, .left = slab_.in_use(), .failed = 0});
        return;
    }
    export_done_ = std::move(done);
    exporting_.clear();
    quiescing_left_ = 0;
    export_left_ = 0;
    slab_.for_each_in_use([&](std::uint32_t slot, Connection& connection) {
        // Only a data plane's pair can move: TLS state cannot, an HTTP exchange answers and
        // closes, a connection still probing or connecting has no plane state yet; and only
        // where its plane can export it now.
        const bool plane_pair = connection.state == State::spliced &&
                                dynamic_cast<PlaneHandler*>(connection.handler.get()) != nullptr;
        if (!plane_pair || !plane_.can_export(connection)) {
            ++export_left_;
            return;
        }
        exporting_.push_back(slot);
        ++quiescing_left_;
        quiesce(connection);
    });
    log::info("handoff_export", {{"worker", std::to_string(worker_.index)},
                                 {"quiescing", std::to_string(quiescing_left_)},
                                 {"left", std::to_string(export_left_)}});
    if (quiescing_left_ == 0) {
        finish_export();
    }
}

void EventLoop::quiesce(Connection& connection) {
    connection.quiescing = true;
    // Every operation on the pair's fds is cancelled: polls, recv, send, and splices (a
    // splice into a pipe is keyed by the pipe's write end, its output). Each completes
    // (-ECANCELED, or with what it did if it had already run) and the plane records it
    // without submitting anything new (plane/flow_handoff.h). The cancels themselves count
    // in `outstanding`, so the last completion is always one of this connection's.
    std::vector<int> fds{connection.client.get(), connection.backend.get()};
    for (const plane::Direction& flow : connection.plane->directions) {
        fds.push_back(flow.pipe_read.get());
        fds.push_back(flow.pipe_write.get());
    }
    for (const int fd : fds) {
        if (fd < 0) {
            continue;
        }
        io_uring_sqe* sqe = sqe_for(connection, ConnectionOp::cancel, 0);
        io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    }
    // The plane's timers (sink watch, sockmap recheck) are keyed by tag, not fd.
    connection.handler->on_closing(*this);
}

void EventLoop::note_quiesced_if_done(Connection& connection) {
    if (connection.outstanding > 0 || connection.quiesced) {
        return;
    }
    connection.quiesced = true;
    --quiescing_left_;
    if (connection.state == State::closing) {
        // Closed meanwhile (a stop): not exported; its teardown runs now.
        connection.quiescing = false;
        ++export_left_;
        finish_if_idle(connection);
    }
    if (quiescing_left_ == 0 && export_done_) {
        finish_export();
    }
}

void EventLoop::finish_export() {
    handoff::ExportOutcome outcome;
    outcome.left = export_left_;
    outcome.accepts_pending = handed_over_ && accepts_armed_ > 0;
    const auto now = std::chrono::steady_clock::now();
    for (const std::uint32_t slot : exporting_) {
        Connection& connection = slab_.at(slot);
        if (!connection.in_use || !connection.quiescing) {
            continue;  // closed while quiescing; its slot may serve another by now
        }
        connection.quiescing = false;
        if (connection.state != State::spliced) {
            ++outcome.left;
            finish_if_idle(connection);
            continue;
        }
        if (connection.export_failed) {
            // A peer reset or a call failed while quiescing: ended here as the plane would
            // have ended it, never handed over half-known.
            ++outcome.failed;
            abort_connection(connection, "failed_during_handoff");
            finish_if_idle(connection);
            continue;
        }
        handoff::ConnectionRecord record;
        record.id = connection.id;
        record.listener = static_cast<std::uint32_t>(connection.listener);
        record.age_ms = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(now - connection.accepted_at)
                .count());
        record.protocol = connection.protocol.substr(0, handoff::kMaxProtocolBytes);
        record.proxied_client = proxied_client_of(connection);
        record.client_peer = record_address(connection.peer_address());
        plane_.export_flow(connection, record, outcome.batch.fds);
        log::info("exported", {{"conn", std::to_string(connection.id)},
                               {"bytes_in", std::to_string(record.directions[0].bytes)},
                               {"bytes_out", std::to_string(record.directions[1].bytes)},
                               {"worker", std::to_string(worker_.index)}});
        outcome.batch.records.push_back(std::move(record));
        connection.handler->teardown();  // the plane's own part (pipes already moved)
        admission_.release(connection.listener, connection.client_key);
        slab_.release(slot);  // no fd left in it: nothing is closed
    }
    exporting_.clear();
    auto done = std::move(export_done_);
    export_done_ = nullptr;
    done(std::move(outcome));
}

handoff::AdoptOutcome EventLoop::adopt_connections(handoff::Batch batch) {
    handoff::AdoptOutcome outcome;
    for (handoff::ConnectionRecord& record : batch.records) {
        adopt_one(record, batch.fds, outcome);
    }
    if (stopping_) {
        // A stop began before these came (back): they end with it, as the others did.
        slab_.for_each_in_use([this](std::uint32_t, Connection& connection) {
            close_connection(connection, "shutdown");
            finish_if_idle(connection);
        });
    }
    log::info("handoff_adopt", {{"worker", std::to_string(worker_.index)},
                                {"adopted", std::to_string(outcome.adopted)},
                                {"refused", std::to_string(outcome.refused)}});
    return outcome;  // fds no record took (none, after check_fds) close with the batch
}

void EventLoop::adopt_one(handoff::ConnectionRecord& record, std::vector<UniqueFd>& fds,
                          handoff::AdoptOutcome& outcome) {
    auto refuse_record = [&](const std::string& why) {
        for (const std::uint32_t index : {record.client, record.backend}) {
            if (index < fds.size() && fds[index].valid()) {
                net::reset_connection(fds[index].get());
            }
        }
        ++outcome.refused;
        if (outcome.first_refusal.empty()) {
            outcome.first_refusal = why;
        }
        log::warning("adopt_refused", {{"from_conn", std::to_string(record.id)}, {"why", why}});
    };
    const auto kind = plane_.handoff_kind();
    if (!kind || *kind != record.plane) {
        refuse_record("the record is for another data plane than this loop's " +
                      std::string(plane_.name()));
        return;
    }
    // handoff::check_fds proved each fd is what the record says; without it, at least a
    // record names two fds that are there.
    if (record.client >= fds.size() || !fds[record.client].valid() ||
        record.backend >= fds.size() || !fds[record.backend].valid()) {
        refuse_record("a socket missing from the fds");
        return;
    }
    // The peer as the socket says. The client as the old process read it from a PROXY
    // header of a trusted balancer, which nothing here can read again: per-client limits and
    // logs go on counting the client, not the balancer.
    // The kernel's word where the socket still has a peer; a socket closed since it left the
    // old process has none (getpeername: not connected), and the record's is all there is.
    net::SocketAddress peer = net::peer_address(fds[record.client].get());
    if (peer.length == 0) {
        peer = address_of(record.client_peer, peer);
    }
    const net::SocketAddress client = address_of(record.proxied_client, peer);
    std::string key = net::host_key(client, client_prefix_);
    if (slab_.in_use() >= slab_.capacity()) {
        refuse_record("no free connection slot");
        return;
    }
    if (const auto refusal = admission_.admit(record.listener, key);
        refusal != limits::Refusal::none) {
        refuse_record("over " + std::string(limits::to_string(refusal)));
        return;
    }
    if (admission_.probes(record.listener)) {
        admission_.end_probing();  // admitted as a new connection would be; it is spliced
    }
    const auto slot = slab_.acquire();  // capacity was checked above
    Connection& connection = slab_.at(*slot);
    connection.id = next_id_;
    next_id_ += worker_.count;
    const auto age = std::chrono::milliseconds(
        std::min<std::uint64_t>(record.age_ms, std::uint64_t{1} << 40));
    connection.accepted_at = std::chrono::steady_clock::now() - age;
    connection.client_address = client;
    if (record.proxied_client.family != 0) {
        // A PROXY header named the client: the balancer stays the socket's peer (`via=`).
        connection.proxied = std::make_unique<ProxiedAddresses>();
        connection.proxied->peer = peer;
    }
    connection.client_key = std::move(key);
    connection.listener = record.listener;
    connection.protocol = record.protocol;
    connection.state = State::spliced;
    plane::import_flow(record, fds, connection, handoff::kMaxBufferedBytes);
    ++connection.handler_epoch;
    connection.handler = std::make_unique<PlaneHandler>(connection, plane_, *this);
    ++counters_.accepted;
    ++outcome.adopted;
    log::info("adopted", {{"conn", std::to_string(connection.id)},
                          {"from_conn", std::to_string(record.id)},
                          {"client", net::to_string(client)},
                          {"worker", std::to_string(worker_.index)}});
    plane_.adopt(connection, *this);
    finish_if_idle(connection);
}

}  // namespace splicer::daemon
