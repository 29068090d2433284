#include "daemon/worker_cpus.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <cerrno>

#include "splicer/config.h"

namespace splicer::daemon {

std::vector<int> allowed_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<int> cpus;
    if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
        for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
            if (CPU_ISSET(cpu, &set)) {
                cpus.push_back(cpu);
            }
        }
    }
    if (cpus.empty()) {
        cpus.push_back(0);
    }
    return cpus;
}

std::uint32_t worker_count(std::uint32_t configured, const std::vector<int>& cpus) {
    if (configured > 0) {
        return std::min(configured, config::kMaxWorkers);
    }
    return static_cast<std::uint32_t>(
        std::clamp<std::size_t>(cpus.size(), 1, config::kMaxWorkers));
}

Result<void> pin_this_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (const int error = ::pthread_setaffinity_np(::pthread_self(), sizeof(set), &set);
        error != 0) {
        return errno_error("pinning to CPU " + std::to_string(cpu), error);
    }
    return {};
}

std::string cpu_list(const std::vector<int>& cpus) {
    std::string text;
    for (const int cpu : cpus) {
        text += (text.empty() ? "" : ",") + std::to_string(cpu);
    }
    return text;
}

}  // namespace splicer::daemon
