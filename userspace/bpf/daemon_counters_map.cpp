#include "bpf/daemon_counters_map.h"

#include <bpf/bpf.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace splicer::bpf {
Result<DaemonCountersMap> DaemonCountersMap::create() {
    UniqueFd fd(bpf_map_create(static_cast<bpf_map_type>(kShape.type), kShape.name, kShape.key_size,
                               kShape.value_size, kShape.max_entries, nullptr));
    if (!fd) {
        return Error{"creating the daemon counters map: " + errno_text(errno)};
    }
    return DaemonCountersMap(std::move(fd));
}

Result<DaemonCountersMap> DaemonCountersMap::open_pinned(int dir_fd, const std::string& dir_path) {
    auto fd = open_pinned_map(dir_fd, dir_path, "daemon", kShape);
    if (!fd) {
        return fd.error();
    }
    return DaemonCountersMap(std::move(fd).value());
}

Result<void> DaemonCountersMap::publish(const DaemonCounters& counters) {
    const __u32 key = 0;
    if (bpf_map_update_elem(fd_.get(), &key, &counters, BPF_ANY) != 0) {
        return Error{"publishing daemon counters: " + errno_text(errno)};
    }
    return {};
}

Result<DaemonCounters> DaemonCountersMap::read() const {
    const __u32 key = 0;
    // The lookup copies value_size bytes: kShape's, checked when a pinned map was opened.
    DaemonCounters counters;
    if (bpf_map_lookup_elem(fd_.get(), &key, &counters) != 0) {
        return Error{"reading daemon counters: " + errno_text(errno)};
    }
    return counters;
}

}  // namespace splicer::bpf
