#include "daemon/event_loop.h"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "daemon/http_exchange.h"
#include "daemon/plane_handler.h"
#include "daemon/tls_transport.h"
#include "log/line_queue.h"
#include "net/sockets.h"
#include "plane/sink_watch.h"
#include "service/notify.h"
#include "splicer/log.h"

namespace splicer::daemon {

using uring::Owner;
using uring::Tag;

namespace {

// Tags for operations that belong to no connection (accept, signals).
constexpr std::uint32_t kNoSlot = 0xffffffffU;
// After an accept failed for lack of fds or memory the connection is still queued, so
// accepting again at once would fail again at once: a busy loop. Pause this long instead;
// clients wait in the listen backlog meanwhile.
constexpr long kAcceptBackoffNanoseconds = 100'000'000;

std::uint64_t loop_tag(LoopOp op, std::uint8_t arg, std::uint32_t index = kNoSlot) {
    return Tag::of(Owner::loop, op, arg, 0, index).encode();
}

}  // namespace

EventLoop::EventLoop(const config::Config& config, route::Router router,
                     std::vector<net::SocketAddress> backends, plane::DataPlane& plane,
                     std::uint32_t max_connections, limits::Admission& admission,
                     WorkerPlace worker)
    : config_(&config),
      router_(std::move(router)),
      backends_(std::move(backends)),
      plane_(plane),
      slab_(max_connections),
      admission_(admission),
      client_prefix_{.ipv4 = config.client_ipv4_prefix_length,
                     .ipv6 = config.client_ipv6_prefix_length},
      worker_(worker),
      next_id_(std::uint64_t{worker.index} + 1) {
    rule_series_.bind(config);
    const std::string_view name = plane.name();
    plane_label_ = name == "sockmap" ? PlaneLabel::sockmap
                   : name == "splice" ? PlaneLabel::splice
                                      : PlaneLabel::copy;
}

EventLoop::~EventLoop() = default;

Result<void> EventLoop::init() {
    if (auto made = mailbox_.init(); !made) {
        return made.error();
    }
    return uring::Ring::init(ring_, 4096);
}

Result<void> EventLoop::add_listener(ListeningSocket listener) {
    if (listeners_.size() >= kMaxListenersPerLoop) {
        return Error{"more than " + std::to_string(kMaxListenersPerLoop) +
                     " listening sockets in one worker"};
    }
    listeners_.push_back(std::move(listener));
    accept_backoff_.push_back({.tv_sec = 0, .tv_nsec = kAcceptBackoffNanoseconds});
    accept_pauses_.emplace_back();
    accept_peers_.emplace_back();
    return {};
}

void EventLoop::watch_signals(UniqueFd signal_fd) { signal_fd_ = std::move(signal_fd); }

Result<void> EventLoop::reload_with(ReloadRunner::Prepare prepare) {
    auto runner = ReloadRunner::create(std::move(prepare));
    if (!runner) {
        return runner.error();
    }
    reload_ = std::move(runner).value();
    return {};
}

Result<void> EventLoop::upgrade_with(ReloadRunner::Prepare hand_over) {
    auto runner = ReloadRunner::create(std::move(hand_over));
    if (!runner) {
        return runner.error();
    }
    upgrade_ = std::move(runner).value();
    return {};
}

std::vector<upgrade::ListenerToHand> EventLoop::listeners_to_hand() const {
    std::vector<upgrade::ListenerToHand> listeners;
    for (const ListeningSocket& listener : listeners_) {
        listeners.push_back({.fd = listener.fd.get(),
                             .what = {.http = listener.http,
                                      .from_systemd = listener.from_systemd}});
    }
    return listeners;
}

void EventLoop::stop_accepting_after_handover() {
    if (handed_over_ || stopping_) {
        return;
    }
    handed_over_ = true;
    // The sockets are the new process's too now: shutdown() would stop them listening for
    // it. Cancelling our accepts leaves every queued connection to the new process's.
    for (std::size_t i = 0; i < listeners_.size(); ++i) {
        cancel_accepts(i);
    }
}

void EventLoop::count_upgrade(bool handed) {
    ++(handed ? counters_.upgrades_ok : counters_.upgrades_failed);
}

void EventLoop::replace_rules(const config::Config& config, route::Router router,
                              std::vector<net::SocketAddress> backends,
                              HttpBackends http_backends) {
    // A decision and the use of its rule index (backend, protocol name) happen in one
    // callback, so no connection can hold an index into the rules being replaced; the same
    // holds for an http route (http_route -> http_connect); only its number stays, for the
    // access line.
    config_ = &config;
    router_ = std::move(router);
    backends_ = std::move(backends);
    http_backends_ = std::move(http_backends);
    rule_series_.bind(config);
}

Result<void> EventLoop::run() {
    for (std::size_t i = 0; i < listeners_.size(); ++i) {
        for (std::uint32_t index = 0; index < kAcceptsPerListener; ++index) {
            arm_accept(i, index);
        }
    }
    if (signal_fd_) {
        arm_signal_read();
    }
    if (reload_) {
        arm_reload_read();
    }
    if (upgrade_) {
        arm_upgrade_read();
    }
    arm_mailbox_read();
    auto published = std::chrono::steady_clock::now();
    auto trimmed = published;
    // After a stop signal, connections close; the loop ends once every operation completed.
    // After a handover, once every connection ended and no accept can still deliver one.
    // Either way not while held (hold_open).
    while ((!stopping_ && !handed_over_) || slab_.in_use() > 0 ||
           (handed_over_ && !stopping_ && accepts_armed_ > 0) || holds_ > 0) {
        const int rc = ring_.submit_and_wait(1000);
        if (rc < 0 && rc != -EBUSY) {
            return Error{"io_uring_submit_and_wait: " + errno_text(rc)};
        }
        ring_.drain([this](const uring::Completion& cqe) { dispatch(cqe); });
        const auto now = std::chrono::steady_clock::now();
        if (publish_ && now - published >= std::chrono::seconds(1)) {
            publish_(counters());
            published = now;
        }
        if (now - trimmed >= std::chrono::seconds(1)) {
            http_buffers_.end_period();  // spares sized to the last seconds' load
            heap_trim_.after_closes(counters_.closed, slab_.in_use());
            backend_pool_.expire(now);  // keepalive_timeout, to the second
            trimmed = now;
        }
    }
    // What the stop prepared (the cancels of systemd's listeners' accepts) goes in even when
    // no connection was left to wait for, so nothing is accepted between here and the exit.
    ring_.submit_and_wait(0);
    if (publish_) {
        publish_(counters());
    }
    return {};
}

DaemonCounters EventLoop::counters() const {
    DaemonCounters current = counters_;
    current.active = slab_.in_use();
    current.sockmap_fallbacks = plane_.fallbacks();
    current.pipe_shortages = plane_.pipe_shortages();
    current.sockmap_source_wakeups = plane_.source_wakeups();
    current.sockmap_empty_wakeups = plane_.empty_wakeups();
    current.sockmap_eof_checks = plane_.eof_checks();
    current.urgent_bytes_dropped = plane_.urgent_bytes_dropped();
    current.log_dropped = log::dropped_lines();
    current.readers_stopped = reader_stops_.stopped_count();
    current.readers_resumed = reader_stops_.resumed_count();
    current.backend_pool_idle_closed = backend_pool_.counts().idle_closed;
    current.plane = static_cast<__u32>(plane_label_);
    plane_.count_bytes(current);  // added to port 80's, counted here
    rule_series_.copy_to(current);
    return current;
}

void EventLoop::count_reload(bool applied) {
    ++(applied ? counters_.reloads_ok : counters_.reloads_failed);
}

io_uring_sqe* EventLoop::sqe_with(Connection& connection, const Tag& tag) {
    io_uring_sqe* sqe = ring_.sqe();
    sqe->user_data = tag.encode();
    ++connection.outstanding;
    return sqe;
}

void EventLoop::dispatch(const uring::Completion& cqe) {
    const Tag tag = Tag::decode(cqe.user_data);
    if (tag.owner == Owner::loop) {
        on_loop_completion(static_cast<LoopOp>(tag.op), tag.arg, tag.slot, cqe.res);
        return;
    }
    if (tag.owner == Owner::pool) {
        backend_pool_.on_completion(static_cast<PoolOp>(tag.op), tag.slot, tag.generation,
                                    cqe.res);
        return;
    }
    Connection* connection = slab_.find(tag.slot, tag.generation);
    if (connection == nullptr) {
        // Every operation is counted and the slot is only freed once all completed.
        log::error("stale_completion", {{"slot", std::to_string(tag.slot)}});
        return;
    }
    --connection->outstanding;
    switch (tag.owner) {
        case Owner::connection:
            on_connection_completion(*connection, static_cast<ConnectionOp>(tag.op), cqe.res);
            break;
        case Owner::handler:
            // A completion of a handler already replaced (the HTTP exchange's, after a 101)
            // has nothing left to do.
            if (connection->handler && tag.of_handler_epoch(connection->handler_epoch)) {
                connection->handler->on_completion(tag.handler_op(), tag.arg, cqe.res,
                                                   cqe.flags);
            }
            break;
        case Owner::loop:
        case Owner::pool: break;
    }
    if (connection->quiescing) {
        note_quiesced_if_done(*connection);  // may free the slot (exported)
        return;
    }
    finish_if_idle(*connection);
}

void EventLoop::on_loop_completion(LoopOp op, std::uint8_t arg, std::uint32_t index,
                                   int result) {
    switch (op) {
        case LoopOp::accept:
            on_accept(arg, index, result);
            accept_left_after_handover();
            break;
        case LoopOp::accept_backoff:
            --accepts_armed_;
            if (!stopping_ && !handed_over_) {
                arm_accept(arg, index);
            }
            accept_left_after_handover();
            break;
        case LoopOp::signal: on_signal(result); break;
        case LoopOp::reload_done: on_reload_done(result); break;
        case LoopOp::mailbox:
            if (result < 0 && result != -EINTR && result != -EAGAIN) {
                // Not expected from an eventfd; re-arming would spin.
                log::error("mailbox_unavailable", {{"error", errno_text(-result)}});
                return;
            }
            mailbox_.run_posted();
            arm_mailbox_read();
            break;
        case LoopOp::upgrade_done: on_upgrade_done(result); break;
        case LoopOp::cancel: break;
    }
}

void EventLoop::on_connection_completion(Connection& connection, ConnectionOp op, int result) {
    switch (op) {
        case ConnectionOp::probe_poll: on_probe_poll(connection, result); break;
        case ConnectionOp::probe_timeout: on_probe_timeout(connection, result); break;
        case ConnectionOp::connect: on_connect(connection, result); break;
        case ConnectionOp::connect_timeout:
        case ConnectionOp::cancel: break;
    }
}

void EventLoop::arm_accept(std::size_t listener, std::uint32_t index) {
    ++accepts_armed_;
    net::SocketAddress& peer = accept_peers_[listener].at(index);
    peer = {};
    peer.length = sizeof(peer.storage);
    io_uring_sqe* sqe = ring_.sqe();
    io_uring_prep_accept(sqe, listeners_[listener].fd.get(), peer.get(), &peer.length,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
    sqe->user_data = loop_tag(LoopOp::accept, static_cast<std::uint8_t>(listener), index);
}

void EventLoop::cancel_accepts(std::size_t listener) {
    // By the listener's socket: its accepts are the only operations on it.
    io_uring_sqe* sqe = ring_.sqe();
    io_uring_prep_cancel_fd(sqe, listeners_[listener].fd.get(), IORING_ASYNC_CANCEL_ALL);
    sqe->user_data = loop_tag(LoopOp::cancel, 0);
}

void EventLoop::on_accept(std::size_t listener, std::uint32_t index, int result) {
    --accepts_armed_;
    if (index >= kAcceptsPerListener || listener >= listeners_.size()) {
        log::error("foreign_accept", {{"listener", std::to_string(listener)},
                                      {"index", std::to_string(index)}});
        std::abort();  // every accept is tagged by arm_accept
    }
    if (stopping_ || (handed_over_ && result < 0)) {
        // At a stop: raced with it, never served. After a handover nothing is re-armed (our
        // cancel ended the accepts); one that came in first is served below.
        if (result >= 0) {
            ::close(result);
        }
        return;
    }
    if (result < 0) {
        on_accept_failed(listener, index, result);
        return;
    }
    UniqueFd client(result);  // closing it unserved refuses the client
    // Read before the accept is armed again: the next accept writes its client's here.
    const net::SocketAddress peer =
        net::accepted_peer(accept_peers_[listener][index], client.get());
    if (!handed_over_) {
        arm_accept(listener, index);
        resume_parked_accepts(listener);
    }
    serve_accepted(listener, std::move(client), peer);
}

void EventLoop::accept_left_after_handover() {
    if (!handed_over_ || stopping_ || accepts_armed_ > 0) {
        return;
    }
    // Every accept of ours has ended; the new process's wait on the same sockets. The
    // kernel wakes one waiting accept per connection (io_uring polls accept exclusively),
    // the oldest first: ours. An accept of ours that a connection woke and our cancel then
    // ended before this thread ran its task work completes -ECANCELED and takes the
    // wake-up with it: the connection waits in the queue and no accept of the new process
    // hears of it until another client comes to that socket (tests/unit/
    // test_accept_wakeup.cpp shows it on this kernel). Under load 1 upgrade in ~60 left a
    // client unserved that way. So whatever waits now is served here, as an accept that
    // completed after the handover is; each cancelled accept lost at most one wake-up.
    for (std::size_t listener = 0; listener < listeners_.size(); ++listener) {
        for (std::size_t taken = 0; taken < kAcceptsPerListener; ++taken) {
            std::optional<net::AcceptedClient> waiting =
                net::accept_waiting(listeners_[listener].fd.get());
            if (!waiting) {
                break;
            }
            log::info("accepted_after_handover",
                      {{"listener", net::to_string(listeners_[listener].address)},
                       {"client", net::to_string(waiting->peer)},
                       {"worker", std::to_string(worker_.index)}});
            serve_accepted(listener, std::move(waiting->socket), waiting->peer);
        }
    }
}

void EventLoop::serve_accepted(std::size_t listener, UniqueFd client,
                               const net::SocketAddress& peer) {
    if (slab_.in_use() >= slab_.capacity()) {
        refuse(listener, limits::Refusal::all_full);
        return;
    }
    const bool proxied = listeners_[listener].proxy_protocol;
    if (proxied && !proxy_peer_trusted(listener, peer)) {
        count_proxy_rejection(ProxyRejection::untrusted, peer, "peer not in trusted_proxies");
        return;
    }
    // Behind a balancer the client is known once its header is read: admitted per client
    // then (proxy_header_accept.cpp), per listener now.
    std::string key = proxied ? std::string() : net::host_key(peer, client_prefix_);
    if (const auto refusal = admission_.admit(listener, key); refusal != limits::Refusal::none) {
        refuse(listener, refusal);
        return;
    }
    const auto slot = slab_.acquire();  // cannot fail: capacity was checked above
    ++counters_.accepted;
    Connection& connection = slab_.at(*slot);
    connection.id = next_id_;
    next_id_ += worker_.count;
    connection.accepted_at = std::chrono::steady_clock::now();
    connection.client = std::move(client);
    connection.client_address = peer;
    if (proxied) {
        // The client is the one its header names (proxy_header_accept.cpp); the peer stays.
        connection.proxied = std::make_unique<ProxiedAddresses>();
        connection.proxied->peer = peer;
    }
    connection.client_key = std::move(key);
    connection.counted_probing = admission_.probes(listener);
    connection.listener = static_cast<std::uint32_t>(listener);
    connection.awaiting_proxy_header = proxied;
    if (listeners_[listener].http && !proxied) {
        // Port 80 has no probing phase: its header timeout bounds a slow client instead
        // (a PROXY header is read by the probe's machinery first, under that timeout).
        start_http(connection);
    } else {
        start_probing(connection);
    }
    // The first look may close it at once (a client reset before its first byte: the peek
    // answers ECONNRESET) with no operation in flight: no completion will come to finish it.
    finish_if_idle(connection);
}

void EventLoop::install_handler(Connection& connection,
                                std::unique_ptr<ConnectionHandler> handler) {
    ++connection.handler_epoch;
    connection.handler = std::move(handler);
    connection.handler->start();
}

void EventLoop::start_http(Connection& connection) {
    connection.state = State::proxying;
    install_handler(connection, std::make_unique<HttpExchange>(connection, *this));
}

void EventLoop::start_terminated(Connection& connection) {
    // Counted as port 80's: each request routed to an https route's backend, under plane
    // http (HttpExchange::on_connect), not the connection as a whole.
    connection.state = State::proxying;
    std::shared_ptr<const tls::ServerContext> server = tls_store_ ? tls_store_->server : nullptr;
    // The transport keeps the store (and so its server context) alive; a SIGHUP replaces
    // tls_store_ for the connections after this one.
    auto make_client = [this, server, &connection](const UniqueFd& socket, TransportRing& ring,
                                                   TransportUser& user)
        -> std::unique_ptr<Transport> {
        if (!server) {
            return nullptr;
        }
        auto session = tls::Session::create(*server);
        if (!session) {
            log::warning("tls_session_failed", {{"conn", std::to_string(connection.id)},
                                                {"error", session.error().message}});
            return nullptr;
        }
        return std::make_unique<TlsTransport>(socket, http::Side::client, ring, user, server,
                                              std::move(session).value());
    };
    install_handler(connection, std::make_unique<HttpExchange>(connection, *this,
                                                               HttpSection::https, make_client));
}

void EventLoop::start_plane(Connection& connection,
                            const std::optional<std::array<plane::SocketBaseline, 2>>& known) {
    connection.state = State::spliced;
    install_handler(connection,
                    std::make_unique<PlaneHandler>(connection, plane_, *this, known));
}

void EventLoop::upgrade_to_plane(Connection& connection, std::unique_ptr<Transport> client) {
    if (!client->spliceable()) {
        // A terminated connection: the client's bytes on the socket are TLS records, which no
        // splice plane can relay; the upgraded stream goes through OpenSSL both ways
        // (daemon/tls_relay.h), bounded by the https section's idle_timeout.
        auto* tls = dynamic_cast<TlsTransport*>(client.get());
        if (tls == nullptr || !config_->https) {
            close_connection(connection, "upgrade_unsupported_over_tls");
            return;
        }
        TlsRelayStart start = tls->release_for_relay();
        start.idle_timeout = config_->https->limits.idle_timeout;
        client.reset();
        log_routed(connection, "tls_relay");
        connection.state = State::spliced;
        // Destroys the exchange, which called this.
        install_handler(connection,
                        std::make_unique<TlsRelay>(connection, *this, std::move(start)));
        return;
    }
    client.reset();  // plain: the plane takes the socket itself
    log_routed(connection);
    start_plane(connection);  // destroys the exchange, which called this
}

void EventLoop::on_accept_failed(std::size_t listener, std::uint32_t index, int error) {
    // Out of fds or memory: the queued connection would fail again at once, so wait before
    // accepting again; the connections already held go on (and may free fds meanwhile).
    // Anything else (e.g. ECONNABORTED): re-arm now.
    ++counters_.accept_errors;
    if (auto failures = accept_failure_log_.pass()) {
        log::warning("accept_failed", {{"listener", net::to_string(listeners_[listener].address)},
                                       {"error", errno_text(error)},
                                       {"failures", std::to_string(*failures)}});
    }
    if (error == -EMFILE || error == -ENFILE || error == -ENOBUFS || error == -ENOMEM) {
        AcceptPause& pause = accept_pauses_[listener];
        if (pause.retrying && *pause.retrying != index) {
            pause.parked.push_back(index);  // another one tries for the listener
            return;
        }
        pause.retrying = index;
        ++accepts_armed_;  // the backoff re-arms it, or ends it (LoopOp::accept_backoff)
        io_uring_sqe* sqe = ring_.sqe();
        io_uring_prep_timeout(sqe, &accept_backoff_[listener], 0, 0);
        sqe->user_data =
            loop_tag(LoopOp::accept_backoff, static_cast<std::uint8_t>(listener), index);
        return;
    }
    arm_accept(listener, index);
}

void EventLoop::resume_parked_accepts(std::size_t listener) {
    AcceptPause& pause = accept_pauses_[listener];
    pause.retrying.reset();
    // Accepting works again: the parked ones take the queue as many at a time as before.
    for (const std::uint32_t index : pause.parked) {
        arm_accept(listener, index);
    }
    pause.parked.clear();
}

void EventLoop::refuse(std::size_t listener, limits::Refusal refusal) {
    ++counters_.refused;
    switch (refusal) {
        case limits::Refusal::listener_full: ++counters_.refused_per_listener; break;
        case limits::Refusal::client_full: ++counters_.refused_per_client; break;
        case limits::Refusal::probing_full: ++counters_.refused_probing; break;
        case limits::Refusal::all_full:
        case limits::Refusal::none: break;
    }
    const auto gate = static_cast<std::size_t>(refusal) - 1;
    if (auto refused = refusal_log_.at(gate).pass()) {
        log::warning("connection_refused",
                     {{"reason", std::string(limits::to_string(refusal))},
                      {"listener", net::to_string(listeners_[listener].address)},
                      {"refused", std::to_string(*refused)}});
    }
}

void EventLoop::leave_probing(Connection& connection) {
    if (connection.counted_probing) {
        connection.counted_probing = false;
        admission_.end_probing();
    }
}

void EventLoop::arm_signal_read() {
    io_uring_sqe* sqe = ring_.sqe();
    io_uring_prep_read(sqe, signal_fd_.get(), &signal_info_, sizeof(signal_info_), 0);
    sqe->user_data = loop_tag(LoopOp::signal, 0);
}

void EventLoop::arm_mailbox_read() {
    io_uring_sqe* sqe = ring_.sqe();
    io_uring_prep_read(sqe, mailbox_.wake_fd(), mailbox_.wake_buffer(), sizeof(std::uint64_t), 0);
    sqe->user_data = loop_tag(LoopOp::mailbox, 0);
}

void EventLoop::arm_reload_read() {
    io_uring_sqe* sqe = ring_.sqe();
    io_uring_prep_read(sqe, reload_->done_fd(), reload_->done_buffer(), sizeof(std::uint64_t), 0);
    sqe->user_data = loop_tag(LoopOp::reload_done, 0);
}

void EventLoop::on_reload_done(int result) {
    if (result < 0 && result != -EINTR && result != -EAGAIN) {
        // Not expected from an eventfd; re-arming would spin. Further SIGHUPs do nothing.
        log::error("reload_unavailable", {{"error", errno_text(-result)}});
        return;
    }
    if (result > 0) {
        reload_->on_done();
    }
    arm_reload_read();
}

void EventLoop::arm_upgrade_read() {
    io_uring_sqe* sqe = ring_.sqe();
    io_uring_prep_read(sqe, upgrade_->done_fd(), upgrade_->done_buffer(), sizeof(std::uint64_t),
                       0);
    sqe->user_data = loop_tag(LoopOp::upgrade_done, 0);
}

void EventLoop::on_upgrade_done(int result) {
    if (result < 0 && result != -EINTR && result != -EAGAIN) {
        log::error("upgrade_unavailable", {{"error", errno_text(-result)}});
        return;
    }
    if (result > 0) {
        upgrade_->on_done();
    }
    arm_upgrade_read();
}

void EventLoop::on_signal(int result) {
    if (result != static_cast<int>(sizeof(signal_info_))) {
        arm_signal_read();
        return;
    }
    log::info("signal", {{"signal", strsignal(static_cast<int>(signal_info_.ssi_signo))}});
    if (signal_info_.ssi_signo == SIGUSR2) {
        // `splicer upgrade`. One at a time; once handed over (the flag stays set), the new
        // process is the one to upgrade.
        if (upgrade_ && upgrading_ != nullptr && !stopping_ && !upgrading_->exchange(true)) {
            upgrade_->request();
        }
        arm_signal_read();
        return;
    }
    if (signal_info_.ssi_signo == SIGHUP) {
        if (reload_) {
            reload_->request();
        }
        arm_signal_read();
        return;
    }
    begin_shutdown();
}

void EventLoop::begin_shutdown() {
    if (stopping_) {
        return;
    }
    stopping_ = true;
    if (worker_.index == 0) {
        // Once for the daemon: every worker stops, and worker 0 (which reads the signals)
        // always among them.
        service::notify_stopping();
    }
    if (on_stop_) {
        on_stop_();
    }
    // Shutting the listeners down ends their multishot accepts; no new connection arrives.
    for (std::size_t i = 0; i < listeners_.size(); ++i) {
        if (handed_over_) {
            break;  // the new process's: our accepts are already cancelled
        }
        if (listeners_[i].from_systemd || (upgrading_ != nullptr && upgrading_->load())) {
            // systemd's socket: shutdown() would stop it listening for systemd too (it is one
            // socket), and the next start would get a dead one; during an upgrade the new
            // process may hold ours already, the same way. Cancel our accept instead;
            // clients that connect now wait in the backlog for the next start.
            cancel_accepts(i);
        } else {
            ::shutdown(listeners_[i].fd.get(), SHUT_RDWR);
        }
    }
    backend_pool_.clear();
    slab_.for_each_in_use([this](std::uint32_t, Connection& connection) {
        close_connection(connection, "shutdown");
        finish_if_idle(connection);
    });
}

void EventLoop::close_connection(Connection& connection, std::string_view reason) {
    end_connection(connection, reason, Shutdowns::both);
}

void EventLoop::close_after_linger(Connection& connection, std::string_view reason) {
    end_connection(connection, reason, Shutdowns::backend_only);
}

void EventLoop::end_connection(Connection& connection, std::string_view reason,
                               Shutdowns shutdowns) {
    if (connection.state == State::closing) {
        return;
    }
    leave_probing(connection);
    connection.state = State::closing;
    connection.end = std::string(reason);
    // Wake every operation still waiting on these sockets: shutdown makes polls report
    // HUP, recv return 0 and send fail, so each completes and the slot can be freed. A
    // client socket that lingered after our FIN has nothing waiting and nothing left to
    // shut: its close follows once the linked timeouts are in.
    if (shutdowns == Shutdowns::both && connection.client.valid()) {
        ::shutdown(connection.client.get(), SHUT_RDWR);
    }
    if (shutdowns != Shutdowns::none && connection.backend.valid()) {
        ::shutdown(connection.backend.get(), SHUT_RDWR);
    }
    if (connection.probe_timeout_armed) {
        remove_pending(connection, ConnectionOp::probe_timeout);
    }
    if (connection.handler) {
        connection.handler->on_closing(*this);
    }
}

Connection& EventLoop::connection_of(plane::Flow& flow) {
    Connection& connection = slab_.at(flow.slot);
    if (static_cast<plane::Flow*>(&connection) != &flow) {
        log::error("foreign_flow", {{"slot", std::to_string(flow.slot)}});
        std::abort();
    }
    return connection;
}

void EventLoop::abort_connection(plane::Flow& flow, std::string_view reason) {
    Connection& connection = connection_of(flow);
    if (connection.state == State::closing) {
        return;
    }
    bool both_reset = true;
    for (const UniqueFd* fd : {&connection.client, &connection.backend}) {
        if (fd->valid()) {
            both_reset = net::reset_connection(fd->get()) && both_reset;
        }
    }
    if (reason == plane::kEndStalled) {
        ++counters_.stalled;
    }
    // A socket the disconnect closed has had its waiters woken: the shutdowns would only
    // answer ENOTCONN (2 calls per aborted pair).
    end_connection(connection, reason, both_reset ? Shutdowns::none : Shutdowns::both);
}

void EventLoop::remove_pending(Connection& connection, ConnectionOp op) {
    remove_tagged(connection,
                  Tag::of(Owner::connection, op, 0, connection.generation, connection.slot),
                  op == ConnectionOp::probe_poll);
}

void EventLoop::remove_handler_timeout(Connection& connection, std::uint8_t op) {
    remove_tagged(connection,
                  Tag::of_handler(op, 0, connection.handler_epoch, connection.generation,
                                  connection.slot),
                  false);
}

void EventLoop::remove_tagged(Connection& connection, const Tag& target, bool poll) {
    io_uring_sqe* sqe = sqe_for(connection, ConnectionOp::cancel, 0);
    if (poll) {
        io_uring_prep_poll_remove(sqe, target.encode());
    } else {
        io_uring_prep_timeout_remove(sqe, target.encode(), 0);
    }
}

void EventLoop::finish_if_idle(Connection& connection) {
    if (connection.state != State::closing || connection.outstanding > 0) {
        return;
    }
    std::array<std::uint64_t, 2> bytes{};
    if (connection.handler) {
        connection.handler->teardown();
        bytes = {connection.handler->bytes(kClientToBackend),
                 connection.handler->bytes(kBackendToClient)};
    }
    const auto duration = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - connection.accepted_at);
    log::info("closed",
              {{"conn", std::to_string(connection.id)},
               {"bytes_in", std::to_string(bytes[kClientToBackend])},
               {"bytes_out", std::to_string(bytes[kBackendToClient])},
               {"duration_ms", std::to_string(duration.count())},
               {"end", connection.end},
               {"worker", std::to_string(worker_.index)}});
    ++counters_.closed;
    admission_.release(connection.listener, connection.client_key);
    slab_.release(connection.slot);  // closes both sockets
    heap_trim_.after_release(slab_.in_use(), counters_.closed);
}

}  // namespace splicer::daemon
