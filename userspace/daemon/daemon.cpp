#include "daemon/daemon.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>

#include "bpf/daemon_counters_map.h"
#include "bpf/pins.h"
#include "daemon/config_source.h"
#include "daemon/event_loop.h"
#include "limits/fd_limit.h"
#include "log/line_queue.h"
#include "metrics/metrics_server.h"
#include "net/ktls_probe.h"
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

// Each listen entry gets the socket the old process handed over (`splicer upgrade`), else the
// one systemd passed for its address (socket activation), else one bound here.
Result<void> listen_all(EventLoop& loop, const std::vector<config::Listener>& listeners, bool http,
                        service::ActivatedListeners& activated, upgrade::Adoption& adopted) {
    for (const config::Listener& listener : listeners) {
        auto address = net::resolve(listener.address);
        if (!address) {
            return address.error().with_context("listener");
        }
        if (std::optional<upgrade::AdoptedListener> handed = adopted.claim(*address, http)) {
            log::info("listening", {{"addr", net::to_string(*address)},
                                    {"http", http ? "yes" : "no"},
                                    {"from", "upgrade"}});
            loop.add_listener({std::move(handed->fd), *address, http, handed->from_systemd,
                               listener.proxy_protocol, listener.trusted_proxies});
            continue;
        }
        if (std::optional<UniqueFd> passed = activated.claim(*address)) {
            // Accepted sockets inherit TCP_NODELAY from the listener, as from ours.
            net::set_no_delay(passed->get());
            log::info("listening", {{"addr", net::to_string(*address)},
                                    {"http", http ? "yes" : "no"},
                                    {"from", "systemd"}});
            loop.add_listener({std::move(*passed), *address, http, true, listener.proxy_protocol,
                               listener.trusted_proxies});
            continue;
        }
        auto fd = net::listen_on(*address, kListenBacklog);
        if (!fd) {
            return fd.error().with_context("listener " + config::to_string(listener.address));
        }
        // Port 0 in a config gets a kernel-chosen port: log the real one.
        const net::SocketAddress bound = net::local_address(fd->get());
        log::info("listening", {{"addr", net::to_string(bound)}, {"http", http ? "yes" : "no"}});
        loop.add_listener({std::move(fd).value(), bound, http, false, listener.proxy_protocol,
                           listener.trusted_proxies});
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
        std::to_string(config.max_pipes.value_or(0)) + " " + std::to_string(config.log_buffer_size);
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
    std::unique_ptr<config::Config> config;
    std::optional<route::Router> router;
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

// Reads the file from `files` (with --splice-mode over its splice_mode), builds the rules and
// resolves every backend, which may wait on DNS. Touches nothing the loop owns.
Result<PreparedConfig> prepare_config(const RunOptions& options,
                                      const privsep::FileSource& files = privsep::disk_source()) {
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
    auto router = route::Router::create(*next);
    if (!router) {
        return router.error();
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
    prepared.config = std::make_unique<config::Config>(std::move(next).value());
    prepared.router.emplace(std::move(router).value());
    prepared.backends = std::move(backends).value();
    prepared.http_backends = std::move(http_backends).value();
    prepared.tls_store = std::move(tls_store).value();
    return prepared;
}

// On the loop: gives the prepared rules to the loop for every decision from now on; `owner`
// keeps the new config alive. A bad file changes nothing. Listeners and limits are start-up
// settings: they stay.
void apply_reload(Result<PreparedConfig>& prepared, EventLoop& loop,
                  const config::Config& running, std::unique_ptr<config::Config>& owner,
                  std::shared_ptr<const tls::CertificateStore>& tls_store) {
    if (!prepared) {
        loop.count_reload(false);
        log::error("reload_failed",
                   {{"error", prepared.error().message}, {"kept", "old rules"}});
        return;
    }
    // The port 80 listeners serve by config.http: it cannot come or go without a restart.
    if (prepared->config->http.has_value() != running.http.has_value()) {
        loop.count_reload(false);
        log::error("reload_failed",
                   {{"error", "the http section was added or removed (restart to change)"},
                    {"kept", "old rules"}});
        return;
    }
    // Connections terminated under the https section read its routes and limits until they
    // end: it may be added by a reload, not removed.
    if (running.https && !prepared->config->https) {
        loop.count_reload(false);
        log::error("reload_failed",
                   {{"error", "the https section was removed (restart to change)"},
                    {"kept", "old rules"}});
        return;
    }
    if (start_up_settings(*prepared->config) != start_up_settings(running)) {
        log::notice("reload_partial",
                    {{"applied", "rules, http routes, timeouts"},
                     {"unchanged", "listeners, limits, user, splice_mode (restart to change)"}});
    }
    loop.replace_rules(*prepared->config, std::move(*prepared->router),
                       std::move(prepared->backends), std::move(prepared->http_backends));
    owner = std::move(prepared->config);
    tls_store = std::move(prepared->tls_store);
    loop.set_tls_store(tls_store);
    loop.count_reload(true);
    log::info("reloaded", {{"rules", std::to_string(owner->rules.size())}});
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
                                           privsep::HelperLink& helper) {
    auto bundle = helper.fetch();
    if (!bundle) {
        return bundle.error();
    }
    return prepare_config(options, privsep::bundle_source(std::move(bundle).value()));
}

// Pins: the sockmap plane's maps and the daemon's counters, for `splicer stats`. Without them
// (no bpffs, or a pin dir refused) the sockmap plane is unavailable; one line says why.
std::optional<bpf::PinDir> open_pins(const std::string& pin_dir, const bpf::PinDirOwners& owners) {
    if (auto mounted = bpf::ensure_bpffs_mounted(pin_dir); !mounted) {
        log::notice("no_pins", {{"reason", mounted.error().message}});
        return std::nullopt;
    }
    auto opened = bpf::PinDir::open(pin_dir, owners);
    if (!opened) {
        // Something splicer did not make stands at the path (a link, another user's dir, a
        // world-writable one, ...): a warning, as someone may be attacking the host.
        log::warning("no_pins", {{"reason", opened.error().message}});
        return std::nullopt;
    }
    return std::move(opened).value();
}

// The argv `splicer upgrade` starts the new binary with: this run's own options.
std::vector<std::string> upgrade_argv(const std::string& binary, const RunOptions& options) {
    std::vector<std::string> argv{binary, "run"};
    if (options.config_path) {
        argv.insert(argv.end(), {"--config", *options.config_path});
    }
    if (options.splice_mode) {
        argv.insert(argv.end(), {"--splice-mode", std::string(config::to_string(*options.splice_mode))});
    }
    argv.insert(argv.end(), {"--pin-dir", options.pin_dir});
    return argv;
}

// On the loop, once the handover thread is done: the new process serves (stop accepting,
// leave the pins to it, tell systemd its pid) or the upgrade failed (serve on).
void apply_upgrade(const Result<pid_t>& handed, EventLoop& loop, std::optional<bpf::PinDir>& pins,
                   std::unique_ptr<metrics::MetricsServer>& endpoint) {
    loop.count_upgrade(handed.has_value());
    if (!handed) {
        log::error("upgrade_failed", {{"reason", handed.error().message}, {"kept", "serving"}});
        return;
    }
    log::notice("upgraded", {{"new_pid", std::to_string(*handed)},
                             {"draining", std::to_string(loop.counters().active)}});
    if (pins) {
        pins->leave_to_successor();
    }
    service::notify_main_pid(*handed);
    loop.stop_accepting_after_handover();
    // Scrapes go to the new process's endpoint from now on (its thread stops within one
    // scrape's deadline).
    endpoint.reset();
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
    const std::unique_ptr<config::Config>& config = prepared->config;
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
    std::optional<bpf::PinDir> pins = open_pins(options.pin_dir, pin_dir_owners(*run_user));
    std::optional<bpf::DaemonCountersMap> counters_map;
    if (pins) {
        auto created = bpf::DaemonCountersMap::create();
        if (created && pins->pin(created->fd(), "daemon")) {
            counters_map.emplace(std::move(created).value());
        }
    }
    // Sized for the configured max_connections (or its default): the fd plan below may lower
    // an unset one to fit the fd limit, never raise it.
    auto plane =
        plane::make_plane(config->splice_mode, pins ? &*pins : nullptr,
                          config->max_connections.value_or(config::kDefaultMaxConnections));
    if (!plane) {
        return plane.error().with_context("data plane");
    }
    // Before the privilege drop: only root may raise the hard limit.
    auto fd_plan = limits::plan_fd_limit(*config, (*plane)->name());
    if (!fd_plan) {
        return fd_plan.error();
    }
    log::write(fd_plan->fitted ? log::Level::notice : log::Level::info, "fd_limit",
               {{"soft", std::to_string(fd_plan->soft_limit)},
                {"needed", std::to_string(fd_plan->needed)},
                {"max_connections", std::to_string(fd_plan->max_connections)},
                {"max_pipes", std::to_string(fd_plan->max_pipes)},
                {"fitted", fd_plan->fitted ? "true" : "false"}});
    (*plane)->set_max_pipes(fd_plan->max_pipes);
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
    EventLoop loop(*config, std::move(*prepared->router), std::move(prepared->backends), **plane,
                   fd_plan->max_connections);
    if (auto ready = loop.init(); !ready) {
        return ready.error();
    }
    if (auto listening = listen_all(loop, config->listeners, false, *activated, *adoption);
        !listening) {
        return listening.error();
    }
    loop.set_http_backends(std::move(prepared->http_backends));
    loop.set_tls_store(prepared->tls_store);
    if (config->http) {
        if (auto listening =
                listen_all(loop, config->http->listeners, true, *activated, *adoption);
            !listening) {
            return listening.error();
        }
    }
    if (auto claimed = activated->check_all_claimed(); !claimed) {
        return claimed.error();
    }
    auto endpoint = metrics_server(*config, *adoption);
    if (auto claimed = adoption->check_all_claimed(); !claimed) {
        return claimed.error();
    }
    if (!endpoint) {
        return endpoint.error();
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
    if (helper) {
        if (auto watching = helper->watch(); !watching) {
            return watching.error();
        }
    }
    // Log lines go through a bounded buffer and a writer thread from here on: a stderr that
    // stops reading costs lines, never the loop. Started after the drop, which is per thread
    // for capabilities; stopped (bounded wait) on every way out of run() by writer_stop.
    log::start_writer(config->log_buffer_size);
    loop.watch_signals(std::move(signal_fd).value());
    std::unique_ptr<config::Config> reloaded;  // the config in force after the last SIGHUP
    // The certificates in force: a failed reload leaves them, as it leaves the rules.
    std::shared_ptr<const tls::CertificateStore> tls_store = prepared->tls_store;
    auto reloads = loop.reload_with([&]() -> ReloadRunner::Apply {
        // std::function needs a copyable closure: the result is shared with it.
        // systemd (ExecReload= sends the SIGHUP) shows the unit reloading until READY=1, sent
        // once the result is applied or refused: the daemon serves on either way.
        service::notify_reloading();
        auto next = std::make_shared<Result<PreparedConfig>>(
            helper ? prepare_from_helper(options, *helper) : prepare_config(options));
        return [&, next] {
            apply_reload(*next, loop, reloaded ? *reloaded : *config, reloaded, tls_store);
            service::notify_ready("serving, reloaded");
        };
    });
    if (!reloads) {
        return reloads.error();
    }
    // SIGUSR2: the handover runs off the loop (it waits for the new process), its outcome is
    // applied on it. One at a time; none once handed over.
    auto upgrades = loop.upgrade_with([&]() -> ReloadRunner::Apply {
        if (loop.handed_over()) {
            return [] {};
        }
        std::vector<upgrade::ListenerToHand> listeners = loop.listeners_to_hand();
        if (*endpoint) {
            listeners.push_back({.fd = (*endpoint)->listener_fd(), .what = {.metrics = true}});
        }
        auto handed = std::make_shared<Result<pid_t>>(upgrade::hand_over(**launcher, listeners));
        return [&, handed] { apply_upgrade(*handed, loop, pins, *endpoint); };
    });
    if (!upgrades) {
        return upgrades.error();
    }
    if (counters_map || *endpoint) {
        loop.publish_counters_with([&counters_map, &endpoint](const DaemonCounters& counters) {
            if (*endpoint) {
                (*endpoint)->publish(counters);
            }
            if (!counters_map) {
                return;
            }
            if (auto published = counters_map->publish(counters); !published) {
                log::warning("stats", {{"error", published.error().message}});
            }
        });
    }
    if (*endpoint) {
        (*endpoint)->publish(loop.counters());  // what scrapes see until the first second
        (*endpoint)->start();
    }
    log::info("ready", {{"plane", std::string((*plane)->name())},
                        {"rules", std::to_string(config->rules.size())}});
    // Every listener is listening: a client that connects from here on waits in the backlog
    // at most until the loop's first submission below arms its accept.
    service::notify_ready("serving on the " + std::string((*plane)->name()) + " plane");
    if (adoption->active()) {
        // The old process stops accepting once it reads this; until then both accept.
        if (auto ready = adoption->send_ready(); !ready) {
            return ready.error();
        }
        log::info("adopted", {{"listeners", std::to_string(config->listeners.size())}});
    }
    auto ran = loop.run();
    log::info("stopped", {{"accepted", std::to_string(loop.counters().accepted)},
                          {"closed", std::to_string(loop.counters().closed)}});
    if (ran && helper && helper->failed()) {
        return Error{"the privileged helper exited (privsep_helper_exited above)"};
    }
    return ran;
}

}  // namespace splicer::daemon
