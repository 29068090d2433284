#pragma once
// Owns the BPF array map that carries DaemonCounters (see splicer/daemon_counters.h).

#include <linux/bpf.h>

#include <string>

#include "bpf/pinned_map.h"
#include "splicer/daemon_counters.h"
#include "splicer/result.h"
#include "splicer/unique_fd.h"

namespace splicer::bpf {

class DaemonCountersMap {
public:
    // What create() makes, and what open_pinned() insists on finding.
    static constexpr MapShape kShape{.type = BPF_MAP_TYPE_ARRAY,
                                     .key_size = sizeof(__u32),
                                     .value_size = sizeof(DaemonCounters),
                                     .max_entries = 1,
                                     .name = "splicer_daemon"};

    static Result<DaemonCountersMap> create();
    // Opens, read-only, the map another process pinned as `daemon` in the checked pin dir
    // `dir_fd` (read side, for `splicer stats`), refusing anything of another shape.
    static Result<DaemonCountersMap> open_pinned(int dir_fd, const std::string& dir_path);

    Result<void> publish(const DaemonCounters& counters);
    [[nodiscard]] Result<DaemonCounters> read() const;
    [[nodiscard]] int fd() const { return fd_.get(); }

private:
    explicit DaemonCountersMap(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;
};

}  // namespace splicer::bpf
