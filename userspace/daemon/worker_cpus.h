#pragma once
// Where the daemon's event loops run (`workers`): the CPUs splicer may run on, as
// sched_getaffinity reports them (taskset, systemd's CPUAffinity=, a cgroup's cpuset), not
// every CPU of the machine. Each loop's thread is pinned to one of them, so its ring, its
// connections and its caches stay on one CPU and loops never migrate onto each other.

#include <cstdint>
#include <string>
#include <vector>

#include "splicer/result.h"

namespace splicer::daemon {

// The CPUs this thread may run on, in increasing order; at least one (CPU 0 if the call
// fails, which only a kernel without the call would do).
std::vector<int> allowed_cpus();

// `configured`, else one loop per allowed CPU, at most config::kMaxWorkers.
std::uint32_t worker_count(std::uint32_t configured, const std::vector<int>& cpus);

// Pins the calling thread to `cpu`.
Result<void> pin_this_thread(int cpu);

// "0,1,2": for the log line.
std::string cpu_list(const std::vector<int>& cpus);

}  // namespace splicer::daemon
