#pragma once
// RLIMIT_NOFILE sized to max_connections at start-up, so the daemon cannot run out of fds
// below its own connection limit (sslh's CVE-2025-46807 was fd exhaustion stopping the
// daemon). The daemon still survives EMFILE/ENFILE (the event loop backs off), but with this
// the limit it meets first is its own, counted and logged.

#include <cstdint>
#include <optional>
#include <string_view>

#include "splicer/result.h"

namespace splicer::limits {

// Fds the daemon holds besides connections: stdio, listeners, the ring, signalfd, BPF maps
// and programs, pin dir, with room to spare.
inline constexpr std::uint64_t kFixedFds = 256;

// Fds for `max_connections` on `plane` ("sockmap", "splice", "copy"): two sockets each, and
// for the splice plane two pipes (four fds) more.
std::uint64_t fds_needed(std::uint32_t max_connections, std::string_view plane);

// Raises the soft RLIMIT_NOFILE to at least `needed`, and the hard limit too when allowed
// (root, up to fs.nr_open). Returns the soft limit now in force, or an error that says what
// is needed and how to get it.
Result<std::uint64_t> raise_fd_limit(std::uint64_t needed);

// Fewest connections worth starting for when the default is fitted to a small fd limit.
inline constexpr std::uint32_t kMinFittedConnections = 64;

struct FdPlan {
    std::uint32_t max_connections = 0;  // what the event loop will hold
    std::uint64_t needed = 0;           // fds that takes
    std::uint64_t soft_limit = 0;       // RLIMIT_NOFILE now in force
    bool fitted = false;                // the default was lowered to fit the hard limit
};

// Sizes RLIMIT_NOFILE for `configured` connections (Config::max_connections): raised to fit,
// or an error when it cannot be. Unconfigured: the default, or as many as the hard limit
// holds when it cannot be raised (at least kMinFittedConnections, else an error).
Result<FdPlan> plan_fd_limit(std::optional<std::uint32_t> configured, std::string_view plane);

}  // namespace splicer::limits
