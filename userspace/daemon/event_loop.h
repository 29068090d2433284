#pragma once
// The io_uring event loop: accepts on every listener, probes each connection's first bytes
// (MSG_PEEK, nothing consumed), routes, connects to the backend with a timeout, and hands the
// pair to the data plane. On http listeners each connection's HttpExchange proxies HTTP/1.1
// instead (http_exchange.h); the loop is its HttpContext. One thread, no blocking call after
// start-up. The daemon runs `workers` loops, one per thread (daemon/daemon.cpp); another
// thread reaches a loop only through post().

#include <sys/signalfd.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/backend_pool.h"
#include "daemon/heap_trim.h"
#include "daemon/http_exchange.h"
#include "daemon/mailbox.h"
#include "daemon/reload_runner.h"
#include "daemon/slab.h"
#include "daemon/tls_relay.h"
#include "handoff/batch.h"
#include "limits/admission.h"
#include "log/interval_gate.h"
#include "metrics/rule_series.h"
#include "net/address.h"
#include "plane/data_plane.h"
#include "splicer/config.h"
#include "splicer/daemon_counters.h"
#include "splicer/router.h"
#include "splicer/unique_fd.h"
#include "tls/certificate_store.h"
#include "upgrade/handover.h"
#include "uring/ring.h"
#include "uring/tag.h"

namespace splicer::daemon {

struct ListeningSocket {
    UniqueFd fd;
    net::SocketAddress address;
    bool http = false;  // port 80 style: HTTP/1.1 reverse proxy instead of probing
    // Passed by systemd (service/activation.h): systemd keeps listening on it after we exit,
    // so a stop must not shut it down.
    bool from_systemd = false;
    // `proxyprotocol: true` on its listen entry: a PROXY header comes first, from one of
    // `trusted_proxies` (empty: any peer) (proxy_header_accept.cpp).
    bool proxy_protocol = false;
    std::vector<config::Network> trusted_proxies;
};

// The resolved backend of every route of the http section (port 80) and of the https one
// (terminated TLS), in route order.
struct HttpBackends {
    std::vector<net::SocketAddress> http;
    std::vector<net::SocketAddress> https;
};

// The loop's own io_uring operations (uring::Owner::loop): they name no connection.
enum class LoopOp : std::uint8_t {
    accept,          // accept; arg = listener index, slot = which of its accepts
    signal,          // read on the signalfd
    accept_backoff,  // the pause after an accept failed for lack of fds/memory; as accept
    reload_done,     // read on the reload eventfd: a SIGHUP's prepared config is ready
    cancel,          // the cancel of a listener's accept at a stop; nothing to act on
    mailbox,         // read on the mailbox's eventfd: work posted by another thread
    upgrade_done,    // read on the upgrade eventfd: a SIGUSR2's handover ended (ok or not)
};
static_assert(uring::fits_in_tag(LoopOp::upgrade_done));

// The most listening sockets one loop accepts from: the listener's index rides in the 8-bit
// argument of the accept's tag. (A new process with fewer workers than the old one takes
// several sockets of one address per worker at an upgrade.)
inline constexpr std::size_t kMaxListenersPerLoop = 256;

// Accepts kept armed on each listener. Each is a single-shot accept with an address buffer of
// its own, so the client's address comes with the accept (a multishot accept writes every
// connection's address into one buffer, overwritten before its completions are read: it
// would cost a getpeername per connection). Many, because a loop round takes at most this
// many waiting clients per listener, and a round under load lasts as long as the completions
// of every connection already held: with 4, 1,000 keep-alive clients arriving at once (wrk
// -c1000, a NAT's clients after a restart) waited up to 4-8 s in the listen backlog, their
// first requests timing out, while the daemon served the others. An armed accept that finds
// nothing waits as one exclusive poll on the listener (io_uring wakes one accept per new
// client, not all), and its buffer is 32 bytes: 64 cost ~2 KiB per listener and take a burst
// of 1,000 in 8 rounds per worker.
inline constexpr std::size_t kAcceptsPerListener = 64;

// Which of the daemon's event loops this one is (`workers`, daemon/daemon.cpp).
struct WorkerPlace {
    std::uint32_t index = 0;
    std::uint32_t count = 1;
};

class EventLoop final : public plane::PlaneContext,
                        public HttpContext,
                        public TlsRelayContext,
                        public HandlerContext {
public:
    // `admission` is shared by every worker (the limits are the daemon's) and must outlive
    // the loop; `max_connections` sizes this loop's slab.
    EventLoop(const config::Config& config, route::Router router,
              std::vector<net::SocketAddress> backends, plane::DataPlane& plane,
              std::uint32_t max_connections, limits::Admission& admission,
              WorkerPlace worker = {});
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;
    ~EventLoop();

    Result<void> init();
    // At most kMaxListenersPerLoop (an accept's tag names its listener in 8 bits).
    Result<void> add_listener(ListeningSocket listener);
    // The certificates terminated connections are served with from now on (start-up, each
    // SIGHUP); connections already terminating keep the store's context they started with.
    void set_tls_store(std::shared_ptr<const tls::CertificateStore> store) {
        tls_store_ = std::move(store);
    }
    // The backend of each config.http and config.https route, in route order.
    void set_http_backends(HttpBackends backends) { http_backends_ = std::move(backends); }
    // SIGTERM and SIGINT end run(), SIGHUP calls the reload callback; they must already be
    // blocked in the calling thread.
    void watch_signals(UniqueFd signal_fd);
    // SIGHUP: `prepare` runs on a thread of its own (daemon/reload_runner.h), the closure it
    // returns runs on the loop.
    Result<void> reload_with(ReloadRunner::Prepare prepare);

    // SIGUSR2 (`splicer upgrade`): `hand_over` runs on a thread of its own, as a reload's
    // prepare does, and the closure it returns runs on the loop (daemon.cpp: upgrade/).
    Result<void> upgrade_with(ReloadRunner::Prepare hand_over);
    // Every worker's: set by worker 0 at a SIGUSR2 (a second one meanwhile is ignored) and
    // cleared by daemon.cpp when the upgrade failed; while set no stop shuts a listener down
    // (the new process may hold it). Must outlive the loop.
    void share_upgrade_flag(std::atomic<bool>& upgrading) { upgrading_ = &upgrading; }
    // What an upgrade can hand to the new process: every listening socket. Their fds stay
    // the loop's; the set is fixed once run() started, so the handover thread may read it.
    [[nodiscard]] std::vector<upgrade::ListenerToHand> listeners_to_hand() const;
    // The new process said ready: stop accepting (cancel the accepts, never shut the shared
    // sockets down), let every connection held finish as it would (probing, HTTP exchanges
    // and TLS sessions cannot move; spliced pairs end when their peers end them), and make
    // run() return once none is left. A later SIGTERM closes what is left, as at any stop.
    void stop_accepting_after_handover();
    [[nodiscard]] bool handed_over() const { return handed_over_; }
    // A SIGUSR2's outcome: splicer_upgrades_total{result}.
    void count_upgrade(bool handed);

    // New rules for every decision from now on (SIGHUP): `config` (which must outlive its
    // use here, until the next replace_rules), its router, one backend per rule and one per
    // http and https route. Connections already routed keep their backend; those still probing, and
    // port 80 requests whose head is not complete yet, decide by these. Listeners and
    // connection limits stay as they were at start.
    void replace_rules(const config::Config& config, route::Router router,
                       std::vector<net::SocketAddress> backends,
                       HttpBackends http_backends);

    // Serves until a stop signal (or stop()), then closes every connection and returns.
    Result<void> run();

    // From any thread: `work` runs on this loop's thread between two completions (mailbox.h).
    void post(Mailbox::Work work) { mailbox_.post(std::move(work)); }
    // On the loop: stops it as a SIGTERM would (other workers post it).
    void stop() { begin_shutdown(); }
    // Called on the loop when it begins to stop, whatever made it (the other workers are
    // told from there).
    void on_stop(std::function<void()> stopping) { on_stop_ = std::move(stopping); }
    [[nodiscard]] const WorkerPlace& worker() const { return worker_; }

    // handoff (userspace/handoff/README.md), on the loop's thread. Quiesces every
    // connection a data plane serves (cancels its operations and waits for their
    // completions), then hands their sockets and state to `done`, still on this loop, and
    // forgets them (slots freed, no socket closed). Other connections stay and are drained
    // here. One export at a time: a second call while one runs gets an empty outcome.
    void export_connections(std::function<void(handoff::ExportOutcome)> done);
    // Serves the connections in `batch` (records checked by handoff::decode and
    // handoff::check_fds) from where they stood; a record it cannot take is reset. On a
    // loop that is stopping, each adopted connection is closed at once, as a stop closes.
    handoff::AdoptOutcome adopt_connections(handoff::Batch batch);
    // While held, run() does not return even with nothing left to serve: a batch the new
    // process of an upgrade did not take may still come back here (daemon/
    // connection_handover.h), or (worker 0, which reads the signals) another worker still
    // drains and a SIGTERM must still be read. Each hold is released once; on the loop's
    // thread, or before run().
    void hold_open() { ++holds_; }
    void release_hold() { --holds_; }
    // A stop (SIGTERM, another worker's failure) has begun on this loop.
    [[nodiscard]] bool stop_requested() const { return stopping_; }
    // What kind of records this loop's plane exports (nullopt: none).
    [[nodiscard]] std::optional<handoff::PlaneKind> handoff_kind() const {
        return plane_.handoff_kind();
    }

    [[nodiscard]] DaemonCounters counters() const;
    // A SIGHUP's outcome (daemon.cpp applies it on the loop): splicer_reloads_total{result}.
    void count_reload(bool applied);
    // Called with the counters at most once a second while serving, and once at the end.
    void publish_counters_with(std::function<void(const DaemonCounters&)> publish) {
        publish_ = std::move(publish);
    }

    // plane::PlaneContext: the Flow a plane names is always a connection of this loop's slab
    io_uring_sqe* sqe_for(plane::Flow& flow, plane::PlaneOp op, std::uint8_t arg) override {
        return sqe_for_handler(connection_of(flow), op, arg);
    }
    void close_connection(plane::Flow& flow, std::string_view reason) override {
        close_connection(connection_of(flow), reason);
    }
    void close_finished(plane::Flow& flow) override {
        end_connection(connection_of(flow), "done", Shutdowns::none);
    }
    void abort_connection(plane::Flow& flow, std::string_view reason) override;
    [[nodiscard]] bool closing(const plane::Flow& flow) const override {
        return slab_.at(flow.slot).state == State::closing;
    }
    plane::ReaderStops& reader_stops() override { return reader_stops_; }
    [[nodiscard]] std::chrono::seconds stall_timeout() const override {
        return config_->stall_timeout;
    }

    // HttpContext
    io_uring_sqe* sqe_for(Connection& connection, HttpOp op, std::uint8_t arg) override {
        return sqe_for_handler(connection, op, arg);
    }
    void close_connection(Connection& connection, std::string_view reason) override;
    void close_after_linger(Connection& connection, std::string_view reason) override;
    [[nodiscard]] const config::Config& config() const override { return *config_; }
    // After a handover too: an HTTP exchange answers its request and closes (no keep-alive).
    [[nodiscard]] bool stopping() const override { return stopping_ || handed_over_; }
    [[nodiscard]] const net::SocketAddress& http_backend(HttpSection section,
                                                         std::size_t route) const override {
        return section == HttpSection::https ? http_backends_.https[route]
                                             : http_backends_.http[route];
    }
    BackendPool& backend_pool() override { return backend_pool_; }
    memory::BufferPool& http_buffers() override { return http_buffers_; }
    metrics::RuleSeriesTable& rule_series() override { return rule_series_; }
    DaemonCounters& live_counters() override { return counters_; }
    void upgrade_to_plane(Connection& connection, std::unique_ptr<Transport> client) override;
    [[nodiscard]] std::shared_ptr<tls::UpstreamContext> upstream_tls(
        std::size_t route) const override {
        return tls_store_ && route < tls_store_->upstreams.size() ? tls_store_->upstreams[route]
                                                                  : nullptr;
    }

    // TlsRelayContext (close_connection: the one above)
    io_uring_sqe* sqe_for(Connection& connection, TlsRelayOp op, std::uint8_t arg) override {
        return sqe_for_handler(connection, op, arg);
    }
    void count_relayed(std::size_t direction, std::uint64_t bytes) override {
        // A terminated WebSocket's bytes count as port 80's upgraded ones do: under http.
        counters_.bytes[static_cast<std::size_t>(PlaneLabel::http)][direction] += bytes;
    }

    // HandlerContext
    void remove_handler_timeout(Connection& connection, std::uint8_t op) override;

private:
    // The connection record `flow` is part of.
    Connection& connection_of(plane::Flow& flow);
    // An SQE whose completion comes back to `owner` of `connection`, tagged (op, arg), and
    // counted in connection.outstanding until it completes.
    template <typename Operation>
    io_uring_sqe* sqe_tagged(Connection& connection, uring::Owner owner, Operation op,
                             std::uint8_t arg) {
        return sqe_with(connection,
                        uring::Tag::of(owner, op, arg, connection.generation, connection.slot));
    }
    // An SQE whose completion comes back to the connection's current handler, tagged (op, arg).
    template <typename Operation>
    io_uring_sqe* sqe_for_handler(Connection& connection, Operation op, std::uint8_t arg) {
        return sqe_with(connection, uring::Tag::of_handler(op, arg, connection.handler_epoch,
                                                           connection.generation, connection.slot));
    }
    io_uring_sqe* sqe_with(Connection& connection, const uring::Tag& tag);
    // Makes `handler` the one serving `connection` (the one before, if any, is destroyed) and
    // starts it.
    void install_handler(Connection& connection, std::unique_ptr<ConnectionHandler> handler);
    // Hands a routed and connected pair to the data plane.
    // `known`: the sockets' baselines, where the daemon counted them (PlaneHandler).
    void start_plane(Connection& connection,
                     const std::optional<std::array<plane::SocketBaseline, 2>>& known = {});
    // The connection's own phases (probing.cpp, connecting.cpp).
    io_uring_sqe* sqe_for(Connection& connection, ConnectionOp op, std::uint8_t arg) {
        return sqe_tagged(connection, uring::Owner::connection, op, arg);
    }
    // Finds the completion's owner and hands it (operation, arg, result, flags).
    void dispatch(const uring::Completion& cqe);
    // `index`: the tag's slot field (which of the listener's accepts, for the accept ops).
    void on_loop_completion(LoopOp op, std::uint8_t arg, std::uint32_t index, int result);
    void on_connection_completion(Connection& connection, ConnectionOp op, int result);
    // Arms accept `index` of `listener` (< kAcceptsPerListener), its peer address buffer
    // reset.
    void arm_accept(std::size_t listener, std::uint32_t index);
    void on_accept(std::size_t listener, std::uint32_t index, int result);
    // A client accepted on `listener` (by an accept of the ring or taken from its queue):
    // refused by a limit, or its connection starts (probing, or port 80's exchange).
    void serve_accepted(std::size_t listener, UniqueFd client, const net::SocketAddress& peer);
    // After a handover, once our last accept ended: serves the clients left waiting in our
    // listeners' queues, whose wake-up a cancelled accept of ours took with it.
    void accept_left_after_handover();
    // Asks the kernel to cancel every accept armed on listener `listener`.
    void cancel_accepts(std::size_t listener);
    void on_accept_failed(std::size_t listener, std::uint32_t index, int error);
    // An accept on `listener` succeeded: a pause for lack of fds or memory is over, and the
    // accepts parked meanwhile are armed again.
    void resume_parked_accepts(std::size_t listener);
    // Which limit, if any, refuses a just-accepted client (closing `client` refuses it).
    void refuse(std::size_t listener, limits::Refusal refusal);
    void leave_probing(Connection& connection);
    void arm_signal_read();
    void arm_reload_read();
    void arm_mailbox_read();
    void on_reload_done(int result);
    void arm_upgrade_read();
    void on_upgrade_done(int result);
    void on_signal(int result);

    // probing (probing.cpp)
    void start_probing(Connection& connection);
    void arm_probe_poll(Connection& connection);
    void on_probe_poll(Connection& connection, int result);
    // Peeks what is new and decides, or waits for more: at the accept (`events` 0) and on
    // each probe poll's completion (its poll events).
    void look_at_client(Connection& connection, unsigned events);
    void on_probe_timeout(Connection& connection, int result);
    void apply_decision(Connection& connection, const route::Decision& decision,
                        std::string_view why);

    // accepting a PROXY header from a balancer (proxy_header_accept.cpp)
    enum class HeaderStep { wait, done, ended };
    [[nodiscard]] bool proxy_peer_trusted(std::size_t listener,
                                          const net::SocketAddress& peer) const;
    void count_proxy_rejection(ProxyRejection reason, const net::SocketAddress& peer,
                               std::string_view detail);
    // Reads the header from the peeked bytes: waits for more, or consumes it (exactly its
    // bytes) and makes its source the client, or ends the connection.
    HeaderStep read_proxy_header(Connection& connection, bool ended);
    // The probe's poll and timeout removed, its socket options undone (probing.cpp).
    void stop_probe_operations(Connection& connection);

    // connecting (connecting.cpp)
    void start_connect(Connection& connection);
    void on_connect(Connection& connection, int result);
    // The rule's PROXY header to the backend (proxy_header_send.h); false: the connection
    // was ended (logged and counted as a backend failure).
    std::optional<std::size_t> write_proxy_header(Connection& connection);

    // port 80: the connection's HTTP exchange (daemon/http_exchange.h) runs it
    void start_http(Connection& connection);
    // a `terminate` rule matched: an HTTP exchange of the https section over TLS
    // (daemon/tls_transport.h), the handshake starting from the ClientHello still queued
    void start_terminated(Connection& connection);

    // close_connection and close_after_linger: `shut_client` false skips the client's
    // shutdown (nothing waits on it, and our FIN is already out).
    // Which sockets end_connection shuts down to wake the operations still waiting on them.
    enum class Shutdowns : std::uint8_t {
        both,
        backend_only,  // the client lingers after our FIN: nothing waits on it
        none,          // both FINs went by (close_finished): every poll on them fired
    };
    void end_connection(Connection& connection, std::string_view reason, Shutdowns shutdowns);
    // Cancels the connection's pending timeout or poll of kind `op` (tagged with arg 0).
    void remove_pending(Connection& connection, ConnectionOp op);
    void remove_tagged(Connection& connection, const uring::Tag& target, bool poll);
    void finish_if_idle(Connection& connection);
    // `plane`: what serves it when not the data plane (a terminated WebSocket: "tls_relay").
    void log_routed(const Connection& connection, std::string_view plane = {}) const;
    void begin_shutdown();
    // handoff (handoff_loop.cpp)
    void quiesce(Connection& connection);
    void note_quiesced_if_done(Connection& connection);
    void finish_export();
    void adopt_one(handoff::ConnectionRecord& record, std::vector<UniqueFd>& fds,
                   handoff::AdoptOutcome& outcome);

    const config::Config* config_;
    route::Router router_;
    std::vector<net::SocketAddress> backends_;  // per rule
    HttpBackends http_backends_;
    std::shared_ptr<const tls::CertificateStore> tls_store_;  // nullptr: no https section
    plane::DataPlane& plane_;
    uring::Ring ring_;
    // Idle HTTP backend connections; declared after the ring, so it goes first.
    BackendPool backend_pool_{ring_};
    // The exchanges' spare read buffers (lent while bytes wait); declared before the slab:
    // the connections' exchanges give theirs back as they go.
    memory::BufferPool http_buffers_{kHttpBufferBytes, kHttpBuffersKept, kHttpBuffersKeptAtMost};
    Slab slab_;
    // Where a probe's peek lands before its new bytes join the connection's `peeked`: one
    // probe's worth for the whole loop (probing.cpp, peek_new).
    std::vector<std::byte> peek_scratch_ = std::vector<std::byte>(tls::kMaxProbeBytes);
    std::vector<ListeningSocket> listeners_;
    // Per listener: the pause before accepting again after EMFILE/ENFILE/ENOBUFS/ENOMEM.
    std::vector<__kernel_timespec> accept_backoff_;
    // Per listener, while its accepts fail that way: the one accept that tries again after
    // each pause, and the others, parked (not armed) until it succeeds. With 64 armed, each
    // in a pause of its own would fail 640 times a second.
    struct AcceptPause {
        std::optional<std::uint32_t> retrying;
        std::vector<std::uint32_t> parked;
    };
    std::vector<AcceptPause> accept_pauses_;
    // Per listener, per armed accept: where the kernel writes the client's address. A deque:
    // adding a listener never moves the buffers accepts already point at.
    std::deque<std::array<net::SocketAddress, kAcceptsPerListener>> accept_peers_;
    log::IntervalGate accept_failure_log_{std::chrono::seconds(1)};
    limits::Admission& admission_;  // shared by every worker
    net::ClientPrefix client_prefix_;  // a start-up setting: a reload keeps it
    // One log line per second per limit, whatever the flood: max_connections, per listener,
    // per client, probing.
    std::array<log::IntervalGate, limits::kRefusalKinds> refusal_log_{
        log::IntervalGate{std::chrono::seconds(1)}, log::IntervalGate{std::chrono::seconds(1)},
        log::IntervalGate{std::chrono::seconds(1)}, log::IntervalGate{std::chrono::seconds(1)}};
    log::IntervalGate proxy_rejection_log_{std::chrono::seconds(1)};
    plane::ReaderStops reader_stops_;
    UniqueFd signal_fd_;
    signalfd_siginfo signal_info_{};
    bool stopping_ = false;
    WorkerPlace worker_;
    // Connection ids: worker i numbers i+1, i+1+count, ... so that ids stay unique across
    // workers without a shared counter.
    std::uint64_t next_id_ = 1;
    Mailbox mailbox_;
    std::function<void()> on_stop_;
    DaemonCounters counters_;  // ~20 KiB (tables of labelled series): copied only to publish
    metrics::RuleSeriesTable rule_series_;
    PlaneLabel plane_label_ = PlaneLabel::copy;
    std::function<void(const DaemonCounters&)> publish_;
    HeapTrim heap_trim_;
    std::unique_ptr<ReloadRunner> reload_;
    // handoff: the export under way (export_connections)
    std::function<void(handoff::ExportOutcome)> export_done_;
    std::vector<std::uint32_t> exporting_;  // slots being quiesced
    std::size_t quiescing_left_ = 0;
    std::size_t export_left_ = 0;
    std::unique_ptr<ReloadRunner> upgrade_;
    std::size_t holds_ = 0;  // hold_open
    // Accepts (and their backoffs) not yet completed: after a handover, run() waits for
    // their last completions so that a connection accepted in the meantime is served here,
    // not dropped.
    std::size_t accepts_armed_ = 0;
    bool handed_over_ = false;
    // share_upgrade_flag; nullptr: no upgrade can be under way.
    std::atomic<bool>* upgrading_ = nullptr;
};

}  // namespace splicer::daemon
