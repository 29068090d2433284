#include "cli/stats_command.h"

#include <bpf/bpf.h>
#include <unistd.h>

#include "bpf/daemon_counters_map.h"
#include "splicer/splice_program.h"
#include "splicer/unique_fd.h"

namespace splicer::cli {
namespace {

void print_row(std::ostream& out, const char* name, std::uint64_t value) {
    out << "  " << name << ' ' << value << '\n';
}

}  // namespace

int stats_command(const std::string& pin_dir, std::ostream& out, std::ostream& err) {
    auto daemon = bpf::DaemonCountersMap::open_pinned(pin_dir + "/daemon");
    if (!daemon) {
        err << "splicer stats: " << daemon.error().message
            << " (is the daemon running with --pin-dir " << pin_dir << "?)\n";
        return 1;
    }
    auto counters = daemon->read();
    if (!counters) {
        err << "splicer stats: " << counters.error().message << '\n';
        return 1;
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
    print_row(out, "stalled", counters->stalled);
    print_row(out, "accept_errors", counters->accept_errors);

    // The kernel's side exists only with the sockmap plane.
    const std::string kernel_path = pin_dir + "/counters";
    if (::access(kernel_path.c_str(), F_OK) != 0) {
        out << "kernel: none (plane is not sockmap)\n";
        return 0;
    }
    UniqueFd kernel(bpf_obj_get(kernel_path.c_str()));
    if (!kernel) {
        err << "splicer stats: " << errno_error("opening " + kernel_path).message << '\n';
        return 1;
    }
    auto sums = bpf::read_counters(kernel.get());
    if (!sums) {
        err << "splicer stats: reading " << kernel_path << ": " << sums.error().message << '\n';
        return 1;
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
        print_row(out, "peer_missing", sums->peer_missing[dir]);
        print_row(out, "redirect_failed", sums->redirect_failed[dir]);
    }
    print_row(out, "no_peer", sums->no_peer);
    return 0;
}

}  // namespace splicer::cli
