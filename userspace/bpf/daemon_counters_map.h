#pragma once
// Owns the BPF array map that carries DaemonCounters (see splicer/daemon_counters.h).

#include "splicer/daemon_counters.h"
#include "splicer/result.h"
#include "splicer/unique_fd.h"

namespace splicer::bpf {

class DaemonCountersMap {
public:
    static Result<DaemonCountersMap> create();
    // Opens the map another process pinned at `path` (read side, for `splicer stats`).
    static Result<DaemonCountersMap> open_pinned(const std::string& path);

    Result<void> publish(const DaemonCounters& counters);
    [[nodiscard]] Result<DaemonCounters> read() const;
    [[nodiscard]] int fd() const { return fd_.get(); }

private:
    explicit DaemonCountersMap(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;
};

}  // namespace splicer::bpf
