#include "daemon/daemon.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <fcntl.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <system_error>
#include <thread>

#include "bpf/daemon_counters_map.h"
#include "bpf/pins.h"
#include "bpf/reused_maps.h"
#include "daemon/config_source.h"
#include "daemon/connection_handover.h"
#include "daemon/event_loop.h"
#include "daemon/worker_cpus.h"
#include "limits/fd_limit.h"
#include "log/line_queue.h"
#include "metrics/counters_sum.h"
#include "metrics/metrics_server.h"
#include "net/ktls_probe.h"
#include "net/listen_group.h"
#include "net/sockets.h"
#include "plane/plane_factory.h"
#include "privsep/helper_link.h"
#include "security/privilege_drop.h"
#include "service/activation.h"
#include "service/notify.h"
#include "splicer/log.h"
#include "splicer/router.h"
#include "tls/certificate_store.h"
#include "upgrade/adoption.h"
#include "upgrade/handover.h"
#include "upgrade/launcher.h"
#include "upgrade/listener_shares.h"

namespace splicer::daemon {
namespace {

constexpr int kListenBacklog = 4096;

Result<UniqueFd> block_signals() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);   // reload
    sigaddset(&signals, SIGUSR2);  // upgrade (upgrade/handover.h)
    if (sigprocmask(SIG_BLOCK, &signals, nullptr) != 0) {
        return errno_error("sigprocmask");
    }
    // A peer that closes while we write must give EPIPE, not kill the daemon.
    ::signal(SIGPIPE, SIG_IGN);
    UniqueFd fd(::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!fd) {
        return errno_error("signalfd");
    }
    return fd;
}

Result<std::vector<net::SocketAddress>> resolve_backends(const config::Config& config) {
    std::vector<net::SocketAddress> backends;
    for (const config::Rule& rule : config.rules) {
        if (rule.terminate) {
            // splicer itself answers it: the backends are the https routes'.
            backends.emplace_back();
            continue;
        }
        auto address = net::resolve(rule.backend);
        if (!address) {
            return address.error().with_context("rule " + rule.name + " (line " +
                                                std::to_string(rule.line) + ")");
        }
        backends.push_back(*address);
    }
    return backends;
}

Result<std::vector<net::SocketAddress>> resolve_routes(const std::vector<config::HttpRoute>& routes,
                                                       std::string_view section) {
    std::vector<net::SocketAddress> backends;
    for (const config::HttpRoute& route : routes) {
        auto address = net::resolve(route.backend);
        if (!address) {
            return address.error().with_context(std::string(section) + " route (line " +
                                                std::to_string(route.line) + ")");
        }
        backends.push_back(*address);
    }
    return backends;
}

// The http section's routes' backends and the https section's (terminated TLS).
Result<HttpBackends> resolve_http_backends(const config::Config& config) {
    HttpBackends backends;
    if (config.http) {
        auto resolved = resolve_routes(config.http->routes, "http");
        if (!resolved) {
            return resolved.error();
        }
        backends.http = std::move(resolved).value();
    }
    if (config.https) {
        auto resolved = resolve_routes(config.https->routes, "https");
        if (!resolved) {
            return resolved.error();
        }
        backends.https = std::move(resolved).value();
    }
    return backends;
}

// What one worker (one event loop on its own thread, `workers`) holds. The loop, its plane
// and the rules in force are touched only on that worker's thread once it runs.
struct Worker {
    std::unique_ptr<plane::DataPlane> plane;  // declared before the loop: outlives it
    std::unique_ptr<EventLoop> loop;
    // The config the loop decides by (its rules, timeouts): kept alive here until this
    // worker applied the next one; other workers may still read the older one meanwhile.
    std::shared_ptr<const config::Config> config;
    std::shared_ptr<const tls::CertificateStore> tls_store;
    std::thread thread;
    Result<void> result;
};

// Each listen entry gets, in every worker: the sockets the old process handed over for its
// address (`splicer upgrade`: every one of them accepted from, upgrade/listener_shares.h),
// else the socket systemd passed for its address (socket activation: systemd passes one
// socket per address, which every worker's ring accepts from: a multishot accept per ring on
// one socket works, each connection going to one of them), else a listener of its own bound
// here (net/listen_group.h: SO_REUSEPORT with more than one worker, the kernel spreading
// connections over the workers).
Result<void> listen_all(std::vector<Worker>& workers, const std::vector<config::Listener>& listeners,
                        bool http, service::ActivatedListeners& activated,
                        upgrade::Adoption& adopted) {
    const auto count = static_cast<std::uint32_t>(workers.size());
    for (const config::Listener& listener : listeners) {
        auto address = net::resolve(listener.address);
        if (!address) {
            return address.error().with_context("listener");
        }
        if (std::vector<upgrade::AdoptedListener> handed = adopted.claim(*address, http);
            !handed.empty()) {
            const std::size_t received = handed.size();
            auto shares =
                upgrade::share_listeners(std::move(handed), *address, count, kListenBacklog);
            if (!shares) {
                return shares.error().with_context("listener " +
                                                   config::to_string(listener.address));
            }
            log::info("listening", {{"addr", net::to_string(*address)},
                                    {"http", http ? "yes" : "no"},
                                    {"from", "upgrade"},
                                    {"received", std::to_string(received)}});
            for (std::uint32_t i = 0; i < count; ++i) {
                for (upgrade::AdoptedListener& share : (*shares)[i]) {
                    if (auto added = workers[i].loop->add_listener(
                            {std::move(share.fd), *address, http, share.from_systemd,
                             listener.proxy_protocol, listener.trusted_proxies});
                        !added) {
                        return added.error().with_context("worker " + std::to_string(i));
                    }
                }
            }
            continue;
        }
        if (std::optional<UniqueFd> passed = activated.claim(*address)) {
            // Accepted sockets inherit TCP_NODELAY from the listener, as from ours.
            net::set_no_delay(passed->get());
            // Non-blocking as ours are (systemd's default is blocking): after an upgrade's
            // handover the old process takes what was left waiting in the queue without
            // waiting for more (EventLoop::accept_left_after_handover).
            if (auto nonblocking = net::set_nonblocking(passed->get()); !nonblocking) {
                return nonblocking.error().with_context("the systemd socket for " +
                                                        net::to_string(*address));
            }
            log::info("listening", {{"addr", net::to_string(*address)},
                                    {"http", http ? "yes" : "no"},
                                    {"from", "systemd"}});
            for (std::uint32_t i = 1; i < count; ++i) {
                UniqueFd copy(::fcntl(passed->get(), F_DUPFD_CLOEXEC, 0));
                if (!copy) {
                    return errno_error("duplicating the systemd socket for " +
                                       net::to_string(*address));
                }
                if (auto added = workers[i].loop->add_listener(
                        {std::move(copy), *address, http, true, listener.proxy_protocol,
                         listener.trusted_proxies});
                    !added) {
                    return added.error();
                }
            }
            if (auto added = workers[0].loop->add_listener({std::move(*passed), *address, http,
                                                            true, listener.proxy_protocol,
                                                            listener.trusted_proxies});
                !added) {
                return added.error();
            }
            continue;
        }
        auto group = net::listen_group(*address, kListenBacklog, count);
        if (!group) {
            return group.error().with_context("listener " + config::to_string(listener.address));
        }
        // Port 0 in a config gets a kernel-chosen port: log the real one.
        const net::SocketAddress bound = net::local_address(group->front().get());
        log::info("listening", {{"addr", net::to_string(bound)}, {"http", http ? "yes" : "no"}});
        for (std::uint32_t i = 0; i < count; ++i) {
            if (auto added = workers[i].loop->add_listener({std::move((*group)[i]), bound, http,
                                                            false, listener.proxy_protocol,
                                                            listener.trusted_proxies});
                !added) {
                return added.error();
            }
        }
    }
    return {};
}

// A listener's PROXY settings (proxyprotocol, trusted_proxies): fixed at start like the
// listener itself, so a reload changing them is reported as not applied.
std::string proxy_settings(const config::Listener& listener) {
    std::string text = listener.proxy_protocol ? "/proxy" : "";
    for (const config::Network& network : listener.trusted_proxies) {
        text += "," + network.text;
    }
    return text;
}

// The settings a reload cannot change, as text to compare.
std::string start_up_settings(const config::Config& config) {
    std::string text =
        std::string(config::to_string(config.splice_mode)) + " " + config.user.value_or("") + " " +
        std::to_string(config.max_connections.value_or(0)) + " " +
        std::to_string(config.max_probing) + " " +
        std::to_string(config.max_connections_per_client) + " " +
        std::to_string(config.client_ipv4_prefix_length) + "/" +
        std::to_string(config.client_ipv6_prefix_length) + " " +
        std::to_string(config.max_pipes.value_or(0)) + " " + std::to_string(config.log_buffer_size) +
        " workers:" + std::to_string(config.workers.value_or(0));
    if (config.metrics) {
        text += " metrics:" + config::to_string(config.metrics->address);
    }
    for (const config::Listener& listener : config.listeners) {
        text += " " + config::to_string(listener.address) + "/" +
                std::to_string(listener.max_connections.value_or(0)) + proxy_settings(listener);
    }
    if (config.http) {
        for (const config::Listener& listener : config.http->listeners) {
            text += " http:" + config::to_string(listener.address) + "/" +
                    std::to_string(listener.max_connections.value_or(0)) +
                    proxy_settings(listener);
        }
    }
    return text;
}

// A configuration with what it needs before it can serve: its rules built and every backend
// resolved. Made at start-up, and for a SIGHUP off the loop (daemon/reload_runner.h).
struct PreparedConfig {
    std::shared_ptr<const config::Config> config;
    // One per worker: a Router is used by one loop at a time (it is moved into it).
    std::vector<route::Router> routers;
    std::vector<net::SocketAddress> backends;
    HttpBackends http_backends;
    // The https section's certificates and backend TLS contexts; nullptr without one. The
    // loop terminates `terminate` rules' connections with it (EventLoop::set_tls_store).
    std::shared_ptr<const tls::CertificateStore> tls_store;
};

// Reads every https file through `files` (the disk at start, as root; on a SIGHUP the bundle
// the privileged helper read as root) into the store; an error names the setting, line and
// file. Notices are logged.
Result<std::shared_ptr<const tls::CertificateStore>> build_tls_store(
    const config::Config& config, const privsep::FileSource& files) {
    if (!config.https) {
        return std::shared_ptr<const tls::CertificateStore>();
    }
    auto store = tls::build_certificate_store(*config.https, privsep::as_reader(files));
    if (!store) {
        return store.error();
    }
    for (const config::Diagnostic& notice : store->notices) {
        log::warning("tls_certificate", {{"setting", notice.setting}, {"notice", notice.message}});
    }
    return std::make_shared<const tls::CertificateStore>(std::move(store).value());
}

// Reads the file from `files` (with --splice-mode over its splice_mode), builds the rules for
// `workers` loops (0: as many as the file's `workers` asks for) and resolves every backend,
// which may wait on DNS. Touches nothing the loops own.
Result<PreparedConfig> prepare_config(const RunOptions& options,
                                      const privsep::FileSource& files = privsep::disk_source(),
                                      std::uint32_t workers = 0) {
    auto next = load_run_config(options.config_path, files);
    if (!next) {
        return next.error();
    }
    if (options.splice_mode) {
        next->splice_mode = *options.splice_mode;
    }
    auto tls_store = build_tls_store(*next, files);
    if (!tls_store) {
        return tls_store.error();
    }
    if (workers == 0) {
        workers = worker_count(next->workers.value_or(0), allowed_cpus());
    }
    std::vector<route::Router> routers;
    for (std::uint32_t i = 0; i < workers; ++i) {
        auto router = route::Router::create(*next);
        if (!router) {
            return router.error();
        }
        routers.push_back(std::move(router).value());
    }
    auto backends = resolve_backends(*next);
    if (!backends) {
        return backends.error();
    }
    auto http_backends = resolve_http_backends(*next);
    if (!http_backends) {
        return http_backends.error();
    }
    PreparedConfig prepared;
    prepared.config = std::make_shared<const config::Config>(std::move(next).value());
    prepared.routers = std::move(routers);
    prepared.backends = std::move(backends).value();
    prepared.http_backends = std::move(http_backends).value();
    prepared.tls_store = std::move(tls_store).value();
    return prepared;
}

// Whether a prepared reload may replace `running` (logged when not). A bad file changes
// nothing. Listeners and limits are start-up settings: they stay.
bool reload_acceptable(const Result<PreparedConfig>& prepared, const config::Config& running) {
    if (!prepared) {
        log::error("reload_failed",
                   {{"error", prepared.error().message}, {"kept", "old rules"}});
        return false;
    }
    // The port 80 listeners serve by config.http: it cannot come or go without a restart.
    if (prepared->config->http.has_value() != running.http.has_value()) {
        log::error("reload_failed",
                   {{"error", "the http section was added or removed (restart to change)"},
                    {"kept", "old rules"}});
        return false;
    }
    // Connections terminated under the https section read its routes and limits until they
    // end: it may be added by a reload, not removed.
    if (running.https && !prepared->config->https) {
        log::error("reload_failed",
                   {{"error", "the https section was removed (restart to change)"},
                    {"kept", "old rules"}});
        return false;
    }
    if (start_up_settings(*prepared->config) != start_up_settings(running)) {
        log::notice("reload_partial",
                    {{"applied", "rules, http routes, timeouts"},
                     {"unchanged",
                      "listeners, limits, user, splice_mode, workers (restart to change)"}});
    }
    return true;
}

// On worker 0's loop (which reads the signals and runs the reload): hands the prepared
// rules to every worker, each applying them on its own thread between two completions
// (EventLoop::post), so a connection is decided by the old rules or the new, never a mix.
// The last worker to apply them logs `reloaded` and tells systemd: from that line on every
// new connection, on every worker, follows the new rules.
void apply_reload(Result<PreparedConfig>& prepared, std::vector<Worker>& workers) {
    Worker& first = workers.front();
    if (!reload_acceptable(prepared, *first.config)) {
        first.loop->count_reload(false);
        service::notify_ready("serving, reload refused");
        return;
    }
    const auto shared = std::make_shared<PreparedConfig>(std::move(prepared).value());
    const auto remaining = std::make_shared<std::atomic<std::size_t>>(workers.size());
    for (std::size_t i = 0; i < workers.size(); ++i) {
        Worker& worker = workers[i];
        // Each worker moves only its own router out of `shared`; the rest it copies.
        worker.loop->post([&worker, i, shared, remaining, count = workers.size()] {
            worker.loop->replace_rules(*shared->config, std::move(shared->routers[i]),
                                       shared->backends, shared->http_backends);
            worker.config = shared->config;
            worker.tls_store = shared->tls_store;
            worker.loop->set_tls_store(worker.tls_store);
            if (remaining->fetch_sub(1) == 1) {
                worker.loop->count_reload(true);
                log::info("reloaded", {{"rules", std::to_string(shared->config->rules.size())},
                                       {"workers", std::to_string(count)}});
                service::notify_ready("serving, reloaded");
            }
        });
    }
}

// The metrics endpoint's listener (metrics/metrics_server.h), bound at start-up like the
// others; nullptr when the config has no `metrics` group.
Result<std::unique_ptr<metrics::MetricsServer>> metrics_server(const config::Config& config,
                                                               upgrade::Adoption& adopted) {
    if (!config.metrics) {
        return std::unique_ptr<metrics::MetricsServer>();
    }
    auto address = net::resolve(config.metrics->address);
    if (!address) {
        return address.error().with_context("metrics listener");
    }
    if (std::optional<UniqueFd> handed = adopted.claim_metrics(*address)) {
        log::info("metrics_listening", {{"addr", net::to_string(*address)}, {"from", "upgrade"}});
        return metrics::MetricsServer::create(std::move(*handed), SPLICER_VERSION);
    }
    auto fd = net::listen_on(*address, 16);
    if (!fd) {
        return fd.error().with_context("metrics listener " +
                                       config::to_string(config.metrics->address));
    }
    log::info("metrics_listening", {{"addr", net::to_string(net::local_address(fd->get()))}});
    return metrics::MetricsServer::create(std::move(fd).value(), SPLICER_VERSION);
}

#ifdef SPLICER_TEST_HOOKS
// Debug builds: SPLICER_TEST_UPGRADE_START_FAIL makes an upgrade's new process fail its start
// after the privilege drop, before ready: "error" returns an error (its destructors run, as
// root no more), "crash" ends it at once (none run). tests/privileged/test_upgrade.cpp checks
// the old process's sockmap verdict and pins after either.
Result<void> fail_start_if_asked(bool adopting) {
    const char* asked = std::getenv("SPLICER_TEST_UPGRADE_START_FAIL");
    if (!adopting || asked == nullptr) {
        return {};
    }
    if (std::string_view(asked) == "crash") {
        // Written at once, not through the log writer's queue: _exit does not wait for it.
        const std::string line = "level=notice event=test_upgrade_crash\n";
        [[maybe_unused]] const ssize_t written = ::write(STDERR_FILENO, line.data(), line.size());
        ::_exit(70);
    }
    return Error{"test: the start fails after the privilege drop"};
}
#else
Result<void> fail_start_if_asked(bool /*adopting*/) {
    return {};
}
#endif

// Who may own an existing pin dir: the starting user (root) and the run user, to whom a
// previous run handed it; nobody else (bpf/pin_dir_check.h).
bpf::PinDirOwners pin_dir_owners(const std::optional<security::RunUser>& run_user) {
    const uid_t self = ::geteuid();
    bpf::PinDirOwners owners{.uids = {self},
                             .text = self == 0 ? "root" : "uid " + std::to_string(self)};
    if (run_user) {
        owners.uids.push_back(run_user->uid);
        owners.text += " or " + run_user->name;
    }
    return owners;
}

// A reload's prepare step after the drop: the file as the privileged helper read it.
Result<PreparedConfig> prepare_from_helper(const RunOptions& options,
                                           privsep::HelperLink& helper, std::uint32_t workers) {
    auto bundle = helper.fetch();
    if (!bundle) {
        return bundle.error();
    }
    return prepare_config(options, privsep::bundle_source(std::move(bundle).value()), workers);
}

// Pins: the sockmap plane's maps and the daemon's counters, for `splicer stats`. Without them
// (no bpffs, or a pin dir refused) the sockmap plane is unavailable; one line says why.
// `successor`: at `splicer upgrade`, the old process's pins stay (its maps are taken from them,
// reuse_old_maps; `splicer stats` reads its counters until this process took over).
std::optional<bpf::PinDir> open_pins(const std::string& pin_dir, const bpf::PinDirOwners& owners,
                                     bool successor) {
    if (auto mounted = bpf::ensure_bpffs_mounted(pin_dir); !mounted) {
        log::notice("no_pins", {{"reason", mounted.error().message}});
        return std::nullopt;
    }
    auto opened = bpf::PinDir::open(
        pin_dir, owners, successor ? bpf::PinDir::Start::successor : bpf::PinDir::Start::fresh);
    if (!opened) {
        // Something splicer did not make stands at the path (a link, another user's dir, a
        // world-writable one, ...): a warning, as someone may be attacking the host.
        log::warning("no_pins", {{"reason", opened.error().message}});
        return std::nullopt;
    }
    return std::move(opened).value();
}

// At `splicer upgrade`, on a plane that may be sockmap: the old process's sockmap maps from
// its pins (bpf/reused_maps.h), so its pairs can move here without leaving their sockhash.
// Its pins stay until this process took over (bpf::PinDir::took_over). A pin
// that is there but not what splicer pins fails the start: the old process, seeing it end
// before ready, serves on (README "Upgrading").
Result<std::optional<bpf::ReusedMaps>> reuse_old_maps(const bpf::PinDir& pins,
                                                      config::SpliceMode mode) {
    std::optional<bpf::ReusedMaps> maps;
    if (mode == config::SpliceMode::sockmap || mode == config::SpliceMode::automatic) {
        // The old process pinned them as root before its privilege drop: so did we start.
        auto opened = bpf::open_maps_to_reuse(pins.dir_fd(), pins.path(), ::geteuid());
        if (!opened) {
            return opened.error().with_context("upgrade: the old process's sockmap maps");
        }
        maps = std::move(opened).value();
    }
    return maps;
}

// The argv `splicer upgrade` starts the new binary with: this run's own options.
std::vector<std::string> upgrade_argv(const std::string& binary, const RunOptions& options) {
    std::vector<std::string> argv{binary, "run"};
    if (options.config_path) {
        argv.insert(argv.end(), {"--config", *options.config_path});
    }
    if (options.splice_mode) {
        argv.insert(argv.end(),
                    {"--splice-mode", std::string(config::to_string(*options.splice_mode))});
    }
    argv.insert(argv.end(), {"--pin-dir", options.pin_dir});
    return argv;
}

// Every listening socket of every worker, for the handover thread: the sets are fixed once
// the workers run, and only the fds' numbers are read (upgrade/handover.h offers each socket
// once, systemd's shared one too).
std::vector<upgrade::ListenerToHand> listeners_to_hand(const std::vector<Worker>& workers,
                                                       const metrics::MetricsServer* endpoint) {
    std::vector<upgrade::ListenerToHand> listeners;
    for (const Worker& worker : workers) {
        std::vector<upgrade::ListenerToHand> own = worker.loop->listeners_to_hand();
        listeners.insert(listeners.end(), own.begin(), own.end());
    }
    if (endpoint != nullptr) {
        listeners.push_back({.fd = endpoint->listener_fd(), .what = {.metrics = true}});
    }
    return listeners;
}

// On worker 0's loop, once the handover thread is done: the new process serves (every
// worker stops accepting, the pins and the metrics endpoint are left to it, systemd follows
// its pid, and the established connections go to it: daemon/connection_handover.h) or the
// upgrade failed (serve on).
void apply_upgrade(Result<upgrade::HandedOver>& handed, std::vector<Worker>& workers,
                   std::optional<bpf::PinDir>& pins, metrics::MetricsServer* endpoint,
                   std::atomic<bool>& upgrading, std::unique_ptr<ConnectionSender>& sender) {
    EventLoop& first = *workers.front().loop;
    first.count_upgrade(handed.has_value());
    if (!handed) {
        // Nobody else holds our listeners: a stop may shut them down again.
        upgrading = false;
        log::error("upgrade_failed", {{"reason", handed.error().message}, {"kept", "serving"}});
        // A sockmap verdict the new process swapped in is ours again (it may have died
        // without putting ours back). On worker 0's plane: the workers share one program.
        workers.front().plane->upgrade_failed();
        if (pins) {
            pins->remove_dead_incoming();
        }
        return;
    }
    // `upgrading` stays set: the listeners are the new process's too from now on, so no
    // stop of this process may shut them down (EventLoop::begin_shutdown).
    log::notice("upgraded", {{"new_pid", std::to_string(handed->pid)},
                             {"workers", std::to_string(workers.size())}});
    if (pins) {
        pins->leave_to_successor();
    }
    service::notify_main_pid(handed->pid);
    std::vector<EventLoop*> loops;
    for (Worker& worker : workers) {
        loops.push_back(worker.loop.get());
        // Each on its own thread: what a worker holds is read there only.
        worker.loop->post([loop = worker.loop.get()] {
            // Held before the accepts stop, in the same closure: a loop with nothing left
            // must not end before the connection sender is done with it (it releases this).
            loop->hold_open();
            loop->stop_accepting_after_handover();
            log::info("draining", {{"worker", std::to_string(loop->worker().index)},
                                   {"connections", std::to_string(loop->counters().active)}});
        });
    }
    // Posted after each loop's stop of its accepts: what a loop accepted until then is
    // exported with the rest, or in a later round once it is spliced.
    sender = std::make_unique<ConnectionSender>(std::move(handed->socket), std::move(loops));
    // Scrapes go to the new process's endpoint from now on (this thread stops within one
    // scrape's deadline; the workers may still publish to it).
    if (endpoint != nullptr) {
        endpoint->stop();
    }
}

// From any thread: every worker's loop stops (posted, so each stops on its own thread).
void stop_all(std::vector<Worker>& workers) {
    for (Worker& worker : workers) {
        worker.loop->post([loop = worker.loop.get()] { loop->stop(); });
    }
}

// Runs each worker's loop on a thread of its own, pinned to one allowed CPU when there are
// several (one worker runs where the scheduler puts it, as before `workers`). A worker whose
// loop fails logs it and stops the others: the daemon ends, cleanly, with that error.
// Returns once every worker's thread has ended.
void run_workers(std::vector<Worker>& workers, const std::vector<int>& cpus) {
    const bool pin = workers.size() > 1;
    // Worker 0 reads the signals: it runs until every other worker ended, so that a SIGTERM
    // while an upgraded process drains is read even when worker 0 had nothing left first.
    EventLoop* first = workers.front().loop.get();
    const auto release_first = [first] { first->post([first] { first->release_hold(); }); };
    for (std::size_t i = 1; i < workers.size(); ++i) {
        first->hold_open();
    }
    std::size_t started = 0;
    for (; started < workers.size(); ++started) {
        Worker& worker = workers[started];
        const int cpu = cpus[started % cpus.size()];
        const auto index = started;
        try {
            worker.thread = std::thread([&workers, &worker, pin, cpu, index, release_first] {
                if (pin) {
                    if (auto pinned = pin_this_thread(cpu); !pinned) {
                        log::warning("worker_not_pinned", {{"worker", std::to_string(index)},
                                                           {"error", pinned.error().message}});
                    }
                }
                worker.result = worker.loop->run();
                if (!worker.result) {
                    log::error("worker_failed", {{"worker", std::to_string(index)},
                                                 {"error", worker.result.error().message}});
                    stop_all(workers);
                }
                if (index > 0) {
                    release_first();
                }
            });
        } catch (const std::system_error& error) {
            worker.result = Error{"starting worker " + std::to_string(index) + ": " +
                                  error.what()};
            log::error("worker_failed", {{"worker", std::to_string(index)},
                                         {"error", worker.result.error().message}});
            stop_all(workers);
            for (std::size_t never = std::max<std::size_t>(started, 1); never < workers.size();
                 ++never) {
                release_first();
            }
            break;
        }
    }
    for (std::size_t i = 0; i < started; ++i) {
        workers[i].thread.join();
    }
}

}  // namespace

Result<void> run(const RunOptions& options) {
    // First: the old process is waiting for this start (upgrade/adoption.h).
    auto adoption = upgrade::Adoption::take();
    if (!adoption) {
        return adoption.error();
    }
    auto prepared = prepare_config(options);
    if (!prepared) {
        return prepared.error();
    }
    const std::shared_ptr<const config::Config> config = prepared->config;
    const std::vector<int> cpus = allowed_cpus();
    const auto worker_total = static_cast<std::uint32_t>(prepared->routers.size());
    auto activated = service::ActivatedListeners::take();
    if (!activated) {
        return activated.error();
    }
    // Known before the pin dir is opened: an existing one may belong to that user.
    auto run_user = security::user_to_become(config->user);
    if (!run_user) {
        return run_user.error().with_context("privilege drop");
    }
    // The privileged helper (privsep/helper_link.h), forked now while this process is root,
    // has one thread and holds no listener, BPF object or ring yet. Not started as root,
    // there is nothing to keep: the daemon reads its files itself, as it can.
    std::unique_ptr<privsep::HelperLink> helper;
    if (*run_user) {
        auto started = privsep::HelperLink::start(run_config_path(options.config_path));
        if (!started) {
            return started.error();
        }
        helper = std::move(started).value();
    }
    // The launcher (upgrade/launcher.h) keeps root to start the next binary at SIGUSR2; forked
    // now, single-threaded, like the helper.
    auto binary = upgrade::upgrade_binary_path();
    if (!binary) {
        return binary.error().with_context("upgrade");
    }
    auto launcher = upgrade::Launcher::start(*binary, upgrade_argv(*binary, options));
    if (!launcher) {
        return launcher.error();
    }
    log::info("upgrade_launcher",
              {{"pid", std::to_string((*launcher)->pid())}, {"binary", *binary}});
    std::optional<bpf::PinDir> pins =
        open_pins(options.pin_dir, pin_dir_owners(*run_user), adoption->active());
    std::optional<bpf::ReusedMaps> reused_maps;
    if (pins && adoption->active()) {
        auto reused = reuse_old_maps(*pins, config->splice_mode);
        if (!reused) {
            return reused.error();
        }
        reused_maps = std::move(reused).value();
    }
    std::optional<bpf::DaemonCountersMap> counters_map;
    if (pins) {
        auto created = bpf::DaemonCountersMap::create();
        if (created && pins->pin(created->fd(), "daemon")) {
            counters_map.emplace(std::move(created).value());
        }
    }
    // Sized for the configured max_connections (or its default): the fd plan below may lower
    // an unset one to fit the fd limit, never raise it.
    // One plane per worker, all of one kind; on sockmap they share one program and sockhash.
    auto planes = plane::make_planes(
        config->splice_mode, pins ? &*pins : nullptr,
        config->max_connections.value_or(config::kDefaultMaxConnections), worker_total,
        std::move(reused_maps));
    if (!planes) {
        return planes.error().with_context("data plane");
    }
    const std::string plane_name(planes->front()->name());
    // Before the privilege drop: only root may raise the hard limit.
    auto fd_plan = limits::plan_fd_limit(*config, plane_name, worker_total);
    if (!fd_plan) {
        return fd_plan.error();
    }
    log::write(fd_plan->fitted ? log::Level::notice : log::Level::info, "fd_limit",
               {{"soft", std::to_string(fd_plan->soft_limit)},
                {"needed", std::to_string(fd_plan->needed)},
                {"max_connections", std::to_string(fd_plan->max_connections)},
                {"max_pipes", std::to_string(fd_plan->max_pipes)},
                {"fitted", fd_plan->fitted ? "true" : "false"}});
    // The pipes are the daemon's: shared out among the workers' planes.
    const std::uint32_t pipes_each =
        fd_plan->max_pipes == 0 ? 0 : std::max<std::uint32_t>(1, fd_plan->max_pipes / worker_total);
    for (const auto& plane : *planes) {
        plane->set_max_pipes(pipes_each);
    }
    auto signal_fd = block_signals();
    if (!signal_fd) {
        return signal_fd.error();
    }

    // Stops the log writer (log/line_queue.h) when run() returns, after `loop` is gone: the
    // loop's reload and heap-trim threads may still log until it joins them, and stopping
    // the writer frees the queue those lines go to. (Without a writer yet it does nothing.)
    struct WriterStop {
        WriterStop() = default;
        WriterStop(const WriterStop&) = delete;
        WriterStop& operator=(const WriterStop&) = delete;
        ~WriterStop() { log::stop_writer(); }
    } const writer_stop;
    // The limits are the daemon's, whichever worker a connection lands on; each worker's slab
    // can hold them all (the kernel's spread of connections over workers is not even).
    limits::Admission admission(*config, fd_plan->max_connections);
    // Every worker's (EventLoop::share_upgrade_flag): set from a SIGUSR2 until a failure is
    // applied, so no stop meanwhile shuts down a listener the new process may already hold.
    // Declared before the workers: it outlives their loops.
    std::atomic<bool> upgrading{false};
    std::vector<Worker> workers(worker_total);
    for (std::uint32_t i = 0; i < worker_total; ++i) {
        Worker& worker = workers[i];
        worker.plane = std::move((*planes)[i]);
        worker.config = config;
        worker.tls_store = prepared->tls_store;
        worker.loop = std::make_unique<EventLoop>(
            *config, std::move(prepared->routers[i]), prepared->backends, *worker.plane,
            fd_plan->max_connections, admission, WorkerPlace{.index = i, .count = worker_total});
        if (auto ready = worker.loop->init(); !ready) {
            return ready.error();
        }
        worker.loop->set_http_backends(prepared->http_backends);
        worker.loop->set_tls_store(worker.tls_store);
    }
    if (auto listening = listen_all(workers, config->listeners, false, *activated, *adoption);
        !listening) {
        return listening.error();
    }
    if (config->http) {
        if (auto listening =
                listen_all(workers, config->http->listeners, true, *activated, *adoption);
            !listening) {
            return listening.error();
        }
    }
    if (auto claimed = activated->check_all_claimed(); !claimed) {
        return claimed.error();
    }
    auto endpoint = metrics_server(*config, *adoption);
    if (!endpoint) {
        return endpoint.error();
    }
    if (auto claimed = adoption->check_all_claimed(); !claimed) {
        return claimed.error();
    }
    // Everything that needs root is done: from here on only held fds are used.
    if (pins && *run_user) {
        const security::RunUser& user = **run_user;
        if (auto handed = pins->hand_over(user.uid, user.gid, user.name); !handed) {
            return handed.error().with_context("privilege drop");
        }
    }
    if (config->https) {
        // Asked while still root (the kernel may load its tls module for it). Either way the
        // TLS runs in userspace this version; the line says whether kTLS could take over.
        const net::KtlsSupport ktls = net::probe_ktls();
        log::info("tls", {{"tls_path", "userspace"},
                          {"ktls", ktls.available ? "available" : "absent"},
                          {"reason", ktls.available ? "kTLS data path not implemented yet"
                                                    : ktls.reason}});
    }
    // Transparent rules set IP_TRANSPARENT on each backend socket: that keeps CAP_NET_RAW.
    const security::KeptCapabilities kept = config::uses_transparent(*config)
                                                ? security::KeptCapabilities::net_raw
                                                : security::KeptCapabilities::none;
    if (auto dropped = security::drop_after_start_up(*run_user, kept); !dropped) {
        return dropped.error();
    }
    if (auto failed = fail_start_if_asked(adoption->active()); !failed) {
        return failed.error();
    }
    if (helper) {
        if (auto watching = helper->watch(); !watching) {
            return watching.error();
        }
    }
    // Log lines go through a bounded buffer and a writer thread from here on: a stderr that
    // stops reading costs lines, never the loop. Started after the drop, which is per thread
    // for capabilities; stopped (bounded wait) on every way out of run() by writer_stop.
    log::start_writer(config->log_buffer_size);
    // Worker 0 reads the signals (blocked in every thread, as the workers start from this
    // one) and runs the reloads; it tells the others (EventLoop::post).
    EventLoop& first = *workers.front().loop;
    first.watch_signals(std::move(signal_fd).value());
    auto reloads = first.reload_with([&options, &helper, &workers,
                                      worker_total]() -> ReloadRunner::Apply {
        // std::function needs a copyable closure: the result is shared with it.
        // systemd (ExecReload= sends the SIGHUP) shows the unit reloading until READY=1, sent
        // once the result is applied or refused: the daemon serves on either way.
        service::notify_reloading();
        auto next = std::make_shared<Result<PreparedConfig>>(
            helper ? prepare_from_helper(options, *helper, worker_total)
                   : prepare_config(options, privsep::disk_source(), worker_total));
        return [&workers, next] { apply_reload(*next, workers); };
    });
    if (!reloads) {
        return reloads.error();
    }
    // SIGUSR2 (read by worker 0): the handover runs off the loops (it waits for the new
    // process), its outcome is applied on worker 0, which tells the others. One at a time;
    // none once handed over (EventLoop::on_signal).
    for (Worker& worker : workers) {
        worker.loop->share_upgrade_flag(upgrading);
    }
    // The established connections' sender (old side) or receiver (new side) of an upgrade:
    // declared after the workers, so each is gone (its thread joined) before their loops.
    std::unique_ptr<ConnectionSender> sender;
    std::unique_ptr<BatchReceiver> receiver;
    auto upgrades = first.upgrade_with([&workers, &launcher, &endpoint, &pins, &upgrading,
                                        &sender]() -> ReloadRunner::Apply {
        metrics::MetricsServer* server = endpoint->get();
        auto handed = std::make_shared<Result<upgrade::HandedOver>>(
            upgrade::hand_over(**launcher, listeners_to_hand(workers, server)));
        return [&workers, &pins, &upgrading, &sender, server, handed] {
            apply_upgrade(*handed, workers, pins, server, upgrading, sender);
        };
    });
    if (!upgrades) {
        return upgrades.error();
    }
    // Each worker publishes its own counters about once a second; `splicer stats` and the
    // metrics endpoint get the sum over the latest of every worker (metrics/counters_sum.h).
    metrics::CountersBoard board(worker_total);
    const auto publish_sum = [&counters_map, &endpoint](const DaemonCounters& total) {
        if (*endpoint) {
            (*endpoint)->publish(total);
        }
        if (!counters_map) {
            return;
        }
        if (auto published = counters_map->publish(total); !published) {
            log::warning("stats", {{"error", published.error().message}});
        }
    };
    for (std::uint32_t i = 0; i < worker_total; ++i) {
        if (counters_map || *endpoint) {
            workers[i].loop->publish_counters_with(
                [&board, &publish_sum, i](const DaemonCounters& counters) {
                    board.publish(i, counters, publish_sum);
                });
        }
        // A worker that stops, whatever stopped it, stops the others.
        workers[i].loop->on_stop([&workers] { stop_all(workers); });
    }
    if (*endpoint) {
        // What scrapes see until the first second.
        for (std::uint32_t i = 0; i < worker_total; ++i) {
            board.publish(i, workers[i].loop->counters(),
                          [&endpoint](const DaemonCounters& total) { (*endpoint)->publish(total); });
        }
        (*endpoint)->start();
    }
    log::info("ready", {{"plane", plane_name},
                        {"rules", std::to_string(config->rules.size())},
                        {"workers", std::to_string(worker_total)},
                        {"cpus", cpu_list(cpus)}});
    // Every listener is listening: a client that connects from here on waits in the backlog
    // at most until its worker's first submission arms its accept.
    service::notify_ready("serving on the " + plane_name + " plane");
    if (adoption->active()) {
        // The old process stops accepting once it reads this; until then both accept. The
        // workers are not running yet: connections wait in the backlogs for their first
        // submission, as at any start.
        if (auto ready = adoption->send_ready(); !ready) {
            return ready.error();
        }
        log::info("adopted", {{"workers", std::to_string(worker_total)}});
        // The old process hands over from now on: what this one replaced to serve (the
        // sockmap verdict on the old sockhash) is not to be put back at its exit.
        for (Worker& worker : workers) {
            worker.plane->took_over();
        }
        if (pins) {
            pins->took_over();
        }
        // The old process's established connections follow; each batch is posted to a
        // worker and adopted once the workers run.
        std::vector<EventLoop*> loops;
        for (Worker& worker : workers) {
            loops.push_back(worker.loop.get());
        }
        receiver = std::make_unique<BatchReceiver>(
            adoption->take_socket(), std::move(loops), workers.front().plane->upgrade_kind());
    }
    run_workers(workers, cpus);
    std::uint64_t accepted = 0;
    std::uint64_t closed = 0;
    for (const Worker& worker : workers) {
        const DaemonCounters counters = worker.loop->counters();
        accepted += counters.accepted;
        closed += counters.closed;
    }
    log::info("stopped", {{"accepted", std::to_string(accepted)},
                          {"closed", std::to_string(closed)},
                          {"workers", std::to_string(worker_total)}});
    for (const Worker& worker : workers) {
        if (!worker.result) {
            return worker.result.error();
        }
    }
    if (helper && helper->failed()) {
        return Error{"the privileged helper exited (privsep_helper_exited above)"};
    }
    return {};
}

}  // namespace splicer::daemon
