#include "daemon/daemon.h"

#include <signal.h>
#include <sys/signalfd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>

#include "bpf/daemon_counters_map.h"
#include "bpf/pins.h"
#include "daemon/config_source.h"
#include "daemon/event_loop.h"
#include "limits/fd_limit.h"
#include "net/sockets.h"
#include "plane/plane_factory.h"
#include "security/privilege_drop.h"
#include "splicer/log.h"
#include "splicer/router.h"

namespace splicer::daemon {
namespace {

constexpr int kListenBacklog = 4096;

Result<UniqueFd> block_stop_signals() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
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
        auto address = net::resolve(rule.backend);
        if (!address) {
            return address.error().with_context("rule " + rule.name + " (line " +
                                                std::to_string(rule.line) + ")");
        }
        backends.push_back(*address);
    }
    return backends;
}

Result<std::vector<net::SocketAddress>> resolve_http_backends(const config::Config& config) {
    std::vector<net::SocketAddress> backends;
    if (!config.http) {
        return backends;
    }
    for (const config::HttpRoute& route : config.http->routes) {
        auto address = net::resolve(route.backend);
        if (!address) {
            return address.error().with_context("http route (line " +
                                                std::to_string(route.line) + ")");
        }
        backends.push_back(*address);
    }
    return backends;
}

Result<void> listen_all(EventLoop& loop, plane::DataPlane& plane,
                        const std::vector<config::Listener>& listeners, bool http) {
    for (const config::Listener& listener : listeners) {
        auto address = net::resolve(listener.address);
        if (!address) {
            return address.error().with_context("listener");
        }
        auto fd = net::listen_on(*address, kListenBacklog);
        if (!fd) {
            return fd.error().with_context("listener " + config::to_string(listener.address));
        }
        // Port 0 in a config gets a kernel-chosen port: log the real one.
        const net::SocketAddress bound = net::local_address(fd->get());
        log::info("listening", {{"addr", net::to_string(bound)}, {"http", http ? "yes" : "no"}});
        // Accepted sockets inherit what the plane sets here (HTTP ones too: an upgrade goes
        // to the plane).
        plane.prepare_listener(fd->get());
        loop.add_listener({std::move(fd).value(), bound, http});
    }
    return {};
}

}  // namespace

Result<void> run(const RunOptions& options) {
    auto config = load_run_config(options.config_path);
    if (!config) {
        return config.error();
    }
    if (options.splice_mode) {
        config->splice_mode = *options.splice_mode;
    }
    auto router = route::Router::create(*config);
    if (!router) {
        return router.error();
    }
    auto backends = resolve_backends(*config);
    if (!backends) {
        return backends.error();
    }
    // Pins: the sockmap plane's maps and the daemon's counters, for `splicer stats`.
    std::optional<bpf::PinDir> pins;
    if (auto mounted = bpf::ensure_bpffs_mounted(options.pin_dir); !mounted) {
        log::notice("no_pins", {{"reason", mounted.error().message}});
    } else if (auto opened = bpf::PinDir::open(options.pin_dir); !opened) {
        log::notice("no_pins", {{"reason", opened.error().message}});
    } else {
        pins.emplace(std::move(opened).value());
    }
    std::optional<bpf::DaemonCountersMap> counters_map;
    if (pins) {
        auto created = bpf::DaemonCountersMap::create();
        if (created && pins->pin(created->fd(), "daemon")) {
            counters_map.emplace(std::move(created).value());
        }
    }
    auto plane = plane::make_plane(config->splice_mode, pins ? &*pins : nullptr);
    if (!plane) {
        return plane.error().with_context("data plane");
    }
    // Before the privilege drop: only root may raise the hard limit.
    auto fd_plan = limits::plan_fd_limit(config->max_connections, (*plane)->name());
    if (!fd_plan) {
        return fd_plan.error();
    }
    log::write(fd_plan->fitted ? log::Level::notice : log::Level::info, "fd_limit",
               {{"soft", std::to_string(fd_plan->soft_limit)},
                {"needed", std::to_string(fd_plan->needed)},
                {"max_connections", std::to_string(fd_plan->max_connections)},
                {"fitted", fd_plan->fitted ? "true" : "false"}});
    auto signal_fd = block_stop_signals();
    if (!signal_fd) {
        return signal_fd.error();
    }

    EventLoop loop(*config, std::move(router).value(), std::move(backends).value(),
                   **plane, fd_plan->max_connections);
    if (auto ready = loop.init(); !ready) {
        return ready.error();
    }
    if (auto listening = listen_all(loop, **plane, config->listeners, false); !listening) {
        return listening.error();
    }
    if (config->http) {
        auto http_backends = resolve_http_backends(*config);
        if (!http_backends) {
            return http_backends.error();
        }
        loop.set_http_backends(std::move(http_backends).value());
        if (auto listening = listen_all(loop, **plane, config->http->listeners, true); !listening) {
            return listening.error();
        }
    }
    // Everything that needs root is done: from here on only held fds are used.
    if (auto dropped = security::drop_after_start_up(config->user, pins ? &pins->path() : nullptr);
        !dropped) {
        return dropped.error();
    }
    loop.watch_signals(std::move(signal_fd).value());
    if (counters_map) {
        loop.publish_counters_with([&counters_map](const DaemonCounters& counters) {
            if (auto published = counters_map->publish(counters); !published) {
                log::warning("stats", {{"error", published.error().message}});
            }
        });
    }
    log::info("ready", {{"plane", std::string((*plane)->name())},
                        {"rules", std::to_string(config->rules.size())}});
    auto ran = loop.run();
    log::info("stopped", {{"accepted", std::to_string(loop.counters().accepted)},
                          {"closed", std::to_string(loop.counters().closed)}});
    return ran;
}

}  // namespace splicer::daemon
