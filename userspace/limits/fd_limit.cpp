#include "limits/fd_limit.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <string>

#include "splicer/config.h"

namespace splicer::limits {

std::uint64_t fds_needed(std::uint32_t max_connections, std::string_view plane) {
    const std::uint64_t per_connection = plane == "splice" ? 6 : 2;
    return kFixedFds + per_connection * max_connections;
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

Result<FdPlan> plan_fd_limit(std::optional<std::uint32_t> configured, std::string_view plane) {
    const std::uint32_t wanted = configured.value_or(config::kDefaultMaxConnections);
    const std::uint64_t needed = fds_needed(wanted, plane);
    auto raised = raise_fd_limit(needed);
    if (raised) {
        return FdPlan{.max_connections = wanted, .needed = needed, .soft_limit = *raised};
    }
    if (configured) {
        return raised.error();
    }
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        return errno_error("getrlimit RLIMIT_NOFILE");
    }
    const std::uint64_t per_connection = fds_needed(1, plane) - kFixedFds;
    const std::uint64_t fitting =
        limit.rlim_max > kFixedFds ? (limit.rlim_max - kFixedFds) / per_connection : 0;
    if (fitting < kMinFittedConnections) {
        return raised.error();
    }
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
        return errno_error("setrlimit RLIMIT_NOFILE");
    }
    const auto fitted = static_cast<std::uint32_t>(std::min<std::uint64_t>(fitting, wanted));
    return FdPlan{.max_connections = fitted,
                  .needed = fds_needed(fitted, plane),
                  .soft_limit = limit.rlim_cur,
                  .fitted = true};
}

}  // namespace splicer::limits
