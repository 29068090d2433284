#pragma once
// The event loop's own counters, published in a one-slot BPF array map pinned as
// PIN_DIR/daemon, so `splicer stats` (another process) can read them while the daemon runs.
// Only userspace writes it; the layout is fixed-width for that reason alone.

#include <linux/types.h>

namespace splicer {

struct DaemonCounters {
    __u64 accepted = 0;
    __u64 active = 0;  // connections held right now
    __u64 routed = 0;
    __u64 no_route = 0;
    __u64 probe_timeouts = 0;
    __u64 backend_failures = 0;
    __u64 closed = 0;
    __u64 refused = 0;            // over a connection limit (any of them)
    __u64 sockmap_fallbacks = 0;  // pairs the sockhash refused, served by the copy plane
    __u64 accept_errors = 0;      // accept failures (EMFILE, ENFILE, ENOBUFS, ...), each backed off
    // Of `refused`, those refused by a narrower limit than max_connections:
    __u64 refused_per_listener = 0;  // the listener's max_connections
    __u64 refused_per_client = 0;    // max_connections_per_client
    __u64 refused_probing = 0;       // max_probing
    // Splice plane: rounds copied through a buffer because every pipe (max_pipes) was taken.
    __u64 pipe_shortages = 0;
    // TCP urgent bytes (MSG_OOB) not delivered, on every plane (README "Data planes").
    __u64 urgent_bytes_dropped = 0;
    // Log lines dropped because stderr took none and the log buffer was full (log_buffer_size).
    __u64 log_dropped = 0;
    // Spliced pairs ended because bytes waited stall_timeout for a peer that took none.
    __u64 stalled = 0;
};
static_assert(sizeof(DaemonCounters) == 136, "DaemonCounters layout");

}  // namespace splicer
