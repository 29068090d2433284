#pragma once
// RLIMIT_NOFILE sized to max_connections at start-up, so the daemon cannot run out of fds
// below its own connection limit (sslh's CVE-2025-46807 was fd exhaustion stopping the
// daemon). The daemon still survives EMFILE/ENFILE (the event loop backs off), but with this
// the limit it meets first is its own, counted and logged.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "splicer/config.h"
#include "splicer/result.h"

namespace splicer::limits {

// Fds the daemon holds besides connections: stdio, listeners, the ring, signalfd, BPF maps
// and programs, pin dir, with room to spare.
inline constexpr std::uint64_t kFixedFds = 256;

// Pipes the splice plane may hold at once when `max_pipes` is not configured: a quarter of
// max_connections (HAProxy's maxpipes default), and at least 16 (or one per direction when
// there are fewer). A pipe is held only while bytes are in it, so most connections hold
// none; when every pipe is taken the plane copies that round through a buffer instead.
std::uint32_t default_pipes(std::uint32_t max_connections);

// Fds for `max_connections` sockets pairs and `pipes` pipes: two each.
std::uint64_t fds_needed(std::uint32_t max_connections, std::uint32_t pipes);

// Fds each worker past the first adds (`workers`): its ring, mailbox eventfd, one listener
// per listen entry, and a spare pipe (the daemon gives each worker's plane at least one).
inline constexpr std::uint64_t kFdsPerWorker = 8;
std::uint64_t worker_fds(std::uint32_t workers, std::size_t listeners);

// Raises the soft RLIMIT_NOFILE to at least `needed`, and the hard limit too when allowed
// (root, up to fs.nr_open). Returns the soft limit now in force, or an error that says what
// is needed and how to get it.
Result<std::uint64_t> raise_fd_limit(std::uint64_t needed);

// Fewest connections worth starting for when the default is fitted to a small fd limit.
inline constexpr std::uint32_t kMinFittedConnections = 64;

struct FdPlan {
    std::uint32_t max_connections = 0;  // what the event loop will hold
    std::uint32_t max_pipes = 0;        // pipes the splice plane may hold (0 on other planes)
    std::uint64_t needed = 0;           // fds that takes
    std::uint64_t soft_limit = 0;       // RLIMIT_NOFILE now in force
    bool fitted = false;                // the default was lowered to fit the hard limit
};

// Sizes RLIMIT_NOFILE for Config::max_connections (and, on the splice plane, max_pipes) over
// `workers` event loops (the connections and pipes are the daemon's, not each loop's):
// raised to fit, or an error when it cannot be. max_connections unconfigured: the default, or
// as many as the hard limit holds when it cannot be raised (at least kMinFittedConnections,
// else an error).
Result<FdPlan> plan_fd_limit(const config::Config& config, std::string_view plane,
                             std::uint32_t workers = 1);

}  // namespace splicer::limits
