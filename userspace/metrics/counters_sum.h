#pragma once
// The daemon's counters over every worker (`workers`): each event loop keeps its own
// DaemonCounters, without locks, and publishes a snapshot about once a second; `splicer
// stats` and the metrics endpoint read their sum. Counts add up; the few values that are
// the process's, not a loop's, are taken once (see add_counters).

#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "splicer/daemon_counters.h"

namespace splicer::metrics {

// Adds `part` (one worker's counters) into `total`. Every count and gauge adds, including
// `active`; rule series add by (rule, protocol) name, since each worker numbers its series
// by the order it met them; `log_dropped` (the process's one log buffer) and `plane` are
// the same in every part and taken as they are; kernel byte counts are reported by one
// worker's plane only (plane/sockmap_plane.h), so adding them counts them once.
void add_counters(DaemonCounters& total, const DaemonCounters& part);

// The latest snapshot of each worker, and their sum. Workers publish from their threads.
class CountersBoard {
public:
    explicit CountersBoard(std::uint32_t workers);

    // Stores worker `index`'s snapshot and hands `sink` the sum over all workers' latest
    // snapshots (a worker not heard from yet counts as zero). `sink` runs under the board's
    // lock, so sums reach it in order: a counter never goes back between two of them.
    void publish(std::uint32_t index, const DaemonCounters& counters,
                 const std::function<void(const DaemonCounters&)>& sink);

private:
    std::mutex mutex_;
    std::vector<DaemonCounters> latest_;  // ~20 KiB each
    DaemonCounters total_;                // here rather than on a worker's stack
};

}  // namespace splicer::metrics
