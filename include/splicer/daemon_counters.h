#pragma once
// The event loop's own counters, published in a one-slot BPF array map pinned as
// PIN_DIR/daemon, so `splicer stats` (another process) can read them while the daemon runs,
// and handed to the metrics endpoint's thread (metrics/metrics_server.h). Only userspace
// writes it; the layout is fixed-width for that reason alone. Labelled series (per rule,
// per HTTP status) sit in fixed tables so that one map slot carries everything the
// Prometheus endpoint and `splicer stats --json` print.

#include <linux/types.h>

#include <cstddef>

namespace splicer {

// The planes bytes and routed connections are counted under (label `plane`): the three data
// planes and port 80's userspace proxy.
enum class PlaneLabel : __u32 { sockmap = 0, splice = 1, copy = 2, http = 3 };
inline constexpr std::size_t kPlaneLabels = 4;

// HTTP statuses 100..599 are counted one by one (label `code`).
inline constexpr int kFirstHttpStatus = 100;
inline constexpr std::size_t kHttpStatusSlots = 500;

// One (rule, protocol) series. Names are cut to kRuleNameBytes - 1 bytes (at a UTF-8
// character boundary) and NUL-terminated.
inline constexpr std::size_t kRuleNameBytes = 64;
inline constexpr std::size_t kProtocolNameBytes = 16;
struct RuleSeries {
    char rule[kRuleNameBytes];
    char protocol[kProtocolNameBytes];
    __u64 routed[kPlaneLabels];  // indexed by PlaneLabel
    __u64 backend_failures;
};
static_assert(sizeof(RuleSeries) == 120, "RuleSeries layout");
// Series past this many (rule names added by reloads) are counted in the last one, "_other".
inline constexpr std::size_t kMaxRuleSeries = 128;

// Why a connection on a `proxyprotocol: true` listener was closed before its PROXY header
// was accepted (label `reason`).
enum class ProxyRejection : __u32 { missing = 0, malformed = 1, untrusted = 2, timeout = 3 };
inline constexpr std::size_t kProxyRejections = 4;

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
    // Payload bytes delivered, [PlaneLabel][direction 0 client->backend, 1 backend->client].
    // sockmap: the verdict's kernel counters (redirected + passed, the passed ones copied by
    // the daemon); splice, copy: bytes the daemon's splices and sends completed; http: bytes
    // port 80 sent (heads as rewritten, bodies as framed).
    __u64 bytes[kPlaneLabels][2] = {};
    __u64 reloads_ok = 0;      // SIGHUPs whose file was applied
    __u64 reloads_failed = 0;  // SIGHUPs whose file was refused (old rules kept)
    __u32 plane = 0;           // PlaneLabel of the data plane in use
    __u32 rule_series_count = 0;
    // Port 80 answers by status (index status - kFirstHttpStatus), counted on the access line.
    __u64 http_responses[kHttpStatusSlots] = {};
    RuleSeries rule_series[kMaxRuleSeries] = {};
    // Connections closed on a PROXY-accepting listener, by ProxyRejection.
    __u64 proxy_header_rejected[kProxyRejections] = {};
    // Spliced sinks whose reader took nothing for 1 s (the watch braked them), and of those,
    // readers that took 1 MiB again (the brake came off): plane/reader_stops.h.
    __u64 readers_stopped = 0;
    __u64 readers_resumed = 0;
    // HTTP backend connections (daemon/backend_pool.h): requests sent on an idle pooled
    // connection (pool hits), on a new one while reuse was on (misses), idle ones closed
    // (the backend closed them, keepalive_timeout, or the pool was full), and requests sent
    // again on a new connection after a reused one failed before any response byte.
    __u64 backend_pool_hits = 0;
    __u64 backend_pool_misses = 0;
    __u64 backend_pool_idle_closed = 0;
    __u64 backend_pool_retries = 0;
    // SIGUSR2 / `splicer upgrade`: handed to a new process that said ready, or failed
    // (upgrade_failed: that process never became ready; this one serves on).
    __u64 upgrades_ok = 0;
    __u64 upgrades_failed = 0;
    // Sockmap plane: completions of the watch on a spliced source (passed bytes readable,
    // EOF, error: plane/sockmap_plane.cpp, arm_source_watch), and of those, wake-ups that
    // found nothing to read (each a peek and a recheck timer: redirected skbs wake a poll).
    __u64 sockmap_source_wakeups = 0;
    __u64 sockmap_empty_wakeups = 0;
    // Sockmap plane: looks at an EOF waiting for its sink to take the bytes before it (each a
    // link read, TCP_INFO of both sockets and SIOCOUTQ); more than 2 per pair means the
    // kernel's psock worker ran late (CPU load). Its 8 bytes are the last in the layout below.
    __u64 sockmap_eof_checks = 0;
};
static_assert(sizeof(DaemonCounters) ==
                  136 + 64 + 16 + 8 + 4000 + 120 * 128 + 32 + 16 + 32 + 16 + 16 + 8,
              "DaemonCounters layout");

}  // namespace splicer
