#include "cli/stats_command.h"

#include <linux/bpf.h>

#include <iterator>
#include <optional>
#include <string>
#include <utility>

#include "bpf/daemon_counters_map.h"
#include "bpf/pin_dir_check.h"
#include "bpf/pinned_map.h"
#include "metrics/exposition.h"
#include "splicer/splice_program.h"

namespace splicer::cli {
namespace {

// The sockmap plane's per-CPU counters map (bpf/splice.bpf.c, `counters`).
constexpr bpf::MapShape kKernelCountersShape{.type = BPF_MAP_TYPE_PERCPU_ARRAY,
                                             .key_size = sizeof(__u32),
                                             .value_size = sizeof(splicer_counters),
                                             .max_entries = 1,
                                             .name = "counters"};

void print_row(std::ostream& out, const char* name, std::uint64_t value) {
    out << "  " << name << ' ' << value << '\n';
}

// The kernel side as JSON: {"client_to_backend": {"redirected_bytes": N, ...}, ...}.
std::string kernel_json(const bpf::Counters& sums) {
    const char* names[SPLICER_DIR_COUNT] = {"client_to_backend", "backend_to_client"};
    std::string out = "{";
    for (std::size_t dir = 0; dir < SPLICER_DIR_COUNT; ++dir) {
        const std::pair<const char*, std::uint64_t> rows[] = {
            {"redirected_bytes", sums.redirected_bytes[dir]},
            {"redirected_skbs", sums.redirected_skbs[dir]},
            {"passed_bytes", sums.passed_bytes[dir]},
            {"passed_skbs", sums.passed_skbs[dir]},
            {"flow_limit_trips", sums.limit_trips[dir]},
            {"send_room_trips", sums.room_trips[dir]},
            {"bare_fins_dropped", sums.bare_fins[dir]},
            {"overlap_bytes_trimmed", sums.overlap_bytes[dir]},
            {"overlap_trim_failed", sums.overlap_failed[dir]},
            {"urgent_dropped_in_kernel", sums.urgent_bytes[dir]},
            {"urgent_passed_to_daemon", sums.urgent_passed[dir]},
            {"edit_failed_aborts", sums.edit_failed[dir]},
            {"peer_missing", sums.peer_missing[dir]},
            {"redirect_failed", sums.redirect_failed[dir]}};
        out += std::string(dir > 0 ? ", \"" : "\"") + names[dir] + "\": {";
        for (std::size_t i = 0; i < std::size(rows); ++i) {
            out += std::string(i > 0 ? ", \"" : "\"") + rows[i].first +
                   "\": " + std::to_string(rows[i].second);
        }
        out += "}";
    }
    return out + ", \"no_peer\": " + std::to_string(sums.no_peer) + "}";
}

}  // namespace

// Runs as root, on a dir and pins the daemon's unprivileged user controls: nothing is
// followed through a link and nothing is read before its shape is checked (bpf/pinned_map.h).
// Any owner is accepted for the dir (stats does not know the run user); the objects in it are
// what is checked.
int stats_command(const std::string& pin_dir, bool json, std::ostream& out, std::ostream& err) {
    auto checked = bpf::open_pin_dir(pin_dir, {});
    if (!checked) {
        err << "splicer stats: " << checked.error().message << '\n';
        return 1;
    }
    if (!bpf::pin_present(checked->dir.get(), "daemon")) {
        err << "splicer stats: " << pin_dir << "/daemon: not pinned (is the daemon running with "
            << "--pin-dir " << pin_dir << "?)\n";
        return 1;
    }
    auto daemon = bpf::DaemonCountersMap::open_pinned(checked->dir.get(), pin_dir);
    if (!daemon) {
        err << "splicer stats: " << daemon.error().message << '\n';
        return 1;
    }
    auto counters = daemon->read();
    if (!counters) {
        err << "splicer stats: " << counters.error().message << '\n';
        return 1;
    }
    // Both maps are checked before anything is printed: a refusal prints no numbers at all.
    std::optional<bpf::Counters> sums;
    if (bpf::pin_present(checked->dir.get(), "counters")) {
        auto kernel =
            bpf::open_pinned_map(checked->dir.get(), pin_dir, "counters", kKernelCountersShape);
        if (!kernel) {
            err << "splicer stats: " << kernel.error().message << '\n';
            return 1;
        }
        auto read = bpf::read_counters(kernel->get());
        if (!read) {
            err << "splicer stats: reading " << pin_dir << "/counters: " << read.error().message
                << '\n';
            return 1;
        }
        sums = *read;
    }
    if (json) {
        out << metrics::json_text(metrics::families(*counters, SPLICER_VERSION),
                                  sums ? kernel_json(*sums) : std::string("null"));
        return 0;
    }
    out << "connections\n";
    print_row(out, "accepted", counters->accepted);
    print_row(out, "active", counters->active);
    print_row(out, "routed", counters->routed);
    print_row(out, "no_route", counters->no_route);
    print_row(out, "probe_timeouts", counters->probe_timeouts);
    print_row(out, "backend_failures", counters->backend_failures);
    print_row(out, "refused", counters->refused);
    print_row(out, "refused_per_listener", counters->refused_per_listener);
    print_row(out, "refused_per_client", counters->refused_per_client);
    print_row(out, "refused_probing", counters->refused_probing);
    print_row(out, "closed", counters->closed);
    print_row(out, "sockmap_fallbacks", counters->sockmap_fallbacks);
    print_row(out, "pipe_shortages", counters->pipe_shortages);
    print_row(out, "sockmap_source_wakeups", counters->sockmap_source_wakeups);
    print_row(out, "sockmap_empty_wakeups", counters->sockmap_empty_wakeups);
    print_row(out, "sockmap_eof_checks", counters->sockmap_eof_checks);
    print_row(out, "stalled", counters->stalled);
    print_row(out, "readers_stopped", counters->readers_stopped);
    print_row(out, "readers_resumed", counters->readers_resumed);
    print_row(out, "backend_pool_hits", counters->backend_pool_hits);
    print_row(out, "backend_pool_misses", counters->backend_pool_misses);
    print_row(out, "backend_pool_idle_closed", counters->backend_pool_idle_closed);
    print_row(out, "backend_pool_retries", counters->backend_pool_retries);
    print_row(out, "accept_errors", counters->accept_errors);
    print_row(out, "urgent_bytes_dropped", counters->urgent_bytes_dropped);
    print_row(out, "log_dropped", counters->log_dropped);
    print_row(out, "reloads_ok", counters->reloads_ok);
    print_row(out, "reloads_failed", counters->reloads_failed);
    print_row(out, "upgrades_ok", counters->upgrades_ok);
    print_row(out, "upgrades_failed", counters->upgrades_failed);
    print_row(out, "proxy_header_missing", counters->proxy_header_rejected[0]);
    print_row(out, "proxy_header_malformed", counters->proxy_header_rejected[1]);
    print_row(out, "proxy_header_untrusted", counters->proxy_header_rejected[2]);
    print_row(out, "proxy_header_timeout", counters->proxy_header_rejected[3]);
    // Delivered on every plane (sockmap: the kernel's counters; http: port 80's sends).
    out << "bytes\n";
    for (std::size_t plane = 0; plane < kPlaneLabels; ++plane) {
        for (std::size_t dir = 0; dir < 2; ++dir) {
            const std::string name =
                std::string(metrics::to_string(static_cast<PlaneLabel>(plane))) +
                (dir == 0 ? "_client_to_backend" : "_backend_to_client");
            print_row(out, name.c_str(), counters->bytes[plane][dir]);
        }
    }

    // The kernel's side exists only with the sockmap plane.
    if (!sums) {
        out << "kernel: none (plane is not sockmap)\n";
        return 0;
    }
    const char* names[SPLICER_DIR_COUNT] = {"client_to_backend", "backend_to_client"};
    for (std::size_t dir = 0; dir < SPLICER_DIR_COUNT; ++dir) {
        out << "kernel " << names[dir] << '\n';
        print_row(out, "redirected_bytes", sums->redirected_bytes[dir]);
        print_row(out, "redirected_skbs", sums->redirected_skbs[dir]);
        print_row(out, "passed_bytes", sums->passed_bytes[dir]);
        print_row(out, "passed_skbs", sums->passed_skbs[dir]);
        print_row(out, "flow_limit_trips", sums->limit_trips[dir]);
        print_row(out, "send_room_trips", sums->room_trips[dir]);
        print_row(out, "bare_fins_dropped", sums->bare_fins[dir]);
        print_row(out, "overlap_bytes_trimmed", sums->overlap_bytes[dir]);
        print_row(out, "overlap_trim_failed", sums->overlap_failed[dir]);
        print_row(out, "urgent_dropped_in_kernel", sums->urgent_bytes[dir]);
        print_row(out, "urgent_passed_to_daemon", sums->urgent_passed[dir]);
        print_row(out, "edit_failed_aborts", sums->edit_failed[dir]);
        print_row(out, "peer_missing", sums->peer_missing[dir]);
        print_row(out, "redirect_failed", sums->redirect_failed[dir]);
    }
    print_row(out, "no_peer", sums->no_peer);
    return 0;
}

}  // namespace splicer::cli
