#include "limits/fd_limit.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <string>

#include "splicer/config.h"

namespace splicer::limits {

std::uint32_t default_pipes(std::uint32_t max_connections) {
    const std::uint32_t quarter = max_connections / 4 + (max_connections % 4 != 0 ? 1 : 0);
    const std::uint64_t directions = 2ULL * max_connections;
    return std::max(quarter, static_cast<std::uint32_t>(std::min<std::uint64_t>(16, directions)));
}

std::uint64_t fds_needed(std::uint32_t max_connections, std::uint32_t pipes) {
    return kFixedFds + 2ULL * max_connections + 2ULL * pipes;
}

std::uint64_t worker_fds(std::uint32_t workers, std::size_t listeners) {
    if (workers <= 1) {
        return 0;
    }
    return std::uint64_t{workers - 1} * (kFdsPerWorker + listeners);
}

Result<std::uint64_t> raise_fd_limit(std::uint64_t needed) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        return errno_error("getrlimit RLIMIT_NOFILE");
    }
    if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur >= needed) {
        return static_cast<std::uint64_t>(limit.rlim_cur);
    }
    rlimit wanted = limit;
    wanted.rlim_cur = needed;
    if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < needed) {
        wanted.rlim_max = needed;  // only root (CAP_SYS_RESOURCE) may, up to fs.nr_open
    }
    if (::setrlimit(RLIMIT_NOFILE, &wanted) != 0) {
        const int error = errno;
        std::uint64_t nr_open = 0;
        std::ifstream("/proc/sys/fs/nr_open") >> nr_open;
        return Error{"RLIMIT_NOFILE: max_connections needs " + std::to_string(needed) +
                     " fds, the hard limit is " + std::to_string(limit.rlim_max) +
                     " (fs.nr_open " + std::to_string(nr_open) + ") and raising it failed: " +
                     errno_text(error) +
                     "; raise the limit (ulimit -n, systemd LimitNOFILE=) or lower "
                     "max_connections"};
    }
    return needed;
}

namespace {

// Pipes for `connections` on `plane`: none off the splice plane.
std::uint32_t pipes_for(std::uint32_t connections, std::optional<std::uint32_t> max_pipes,
                        std::string_view plane) {
    if (plane != "splice") {
        return 0;
    }
    return max_pipes.value_or(default_pipes(connections));
}

// The most connections, up to `wanted`, whose fds fit in `limit` (fds_needed is monotonic).
std::uint32_t connections_fitting(std::uint64_t limit, std::uint64_t workers_fds,
                                  std::uint32_t wanted,
                                  std::optional<std::uint32_t> max_pipes,
                                  std::string_view plane) {
    std::uint32_t low = 0;
    std::uint32_t high = wanted;
    while (low < high) {
        const std::uint32_t middle = low + (high - low + 1) / 2;
        if (fds_needed(middle, pipes_for(middle, max_pipes, plane)) + workers_fds <= limit) {
            low = middle;
        } else {
            high = middle - 1;
        }
    }
    return low;
}

}  // namespace

Result<FdPlan> plan_fd_limit(const config::Config& config, std::string_view plane,
                             std::uint32_t workers) {
    const std::uint32_t wanted = config.max_connections.value_or(config::kDefaultMaxConnections);
    const std::uint32_t pipes = pipes_for(wanted, config.max_pipes, plane);
    const std::size_t listeners =
        config.listeners.size() + (config.http ? config.http->listeners.size() : 0);
    const std::uint64_t workers_fds = worker_fds(workers, listeners);
    const std::uint64_t needed = fds_needed(wanted, pipes) + workers_fds;
    auto raised = raise_fd_limit(needed);
    if (raised) {
        return FdPlan{.max_connections = wanted,
                      .max_pipes = pipes,
                      .needed = needed,
                      .soft_limit = *raised};
    }
    if (config.max_connections) {
        return raised.error();
    }
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        return errno_error("getrlimit RLIMIT_NOFILE");
    }
    const std::uint32_t fitted = connections_fitting(limit.rlim_max, workers_fds, wanted, config.max_pipes, plane);
    if (fitted < kMinFittedConnections) {
        return raised.error();
    }
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
        return errno_error("setrlimit RLIMIT_NOFILE");
    }
    const std::uint32_t fitted_pipes = pipes_for(fitted, config.max_pipes, plane);
    return FdPlan{.max_connections = fitted,
                  .max_pipes = fitted_pipes,
                  .needed = fds_needed(fitted, fitted_pipes) + workers_fds,
                  .soft_limit = limit.rlim_cur,
                  .fitted = true};
}

}  // namespace splicer::limits
