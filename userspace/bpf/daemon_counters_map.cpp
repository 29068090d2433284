#include "bpf/daemon_counters_map.h"

#include <bpf/bpf.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace splicer::bpf {
Result<DaemonCountersMap> DaemonCountersMap::create() {
    UniqueFd fd(bpf_map_create(BPF_MAP_TYPE_ARRAY, "splicer_daemon", sizeof(__u32),
                               sizeof(DaemonCounters), 1, nullptr));
    if (!fd) {
        return Error{"creating the daemon counters map: " + errno_text(errno)};
    }
    return DaemonCountersMap(std::move(fd));
}

Result<DaemonCountersMap> DaemonCountersMap::open_pinned(const std::string& path) {
    UniqueFd fd(bpf_obj_get(path.c_str()));
    if (!fd) {
        return Error{"opening " + path + ": " + errno_text(errno)};
    }
    return DaemonCountersMap(std::move(fd));
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
    DaemonCounters counters;
    if (bpf_map_lookup_elem(fd_.get(), &key, &counters) != 0) {
        return Error{"reading daemon counters: " + errno_text(errno)};
    }
    return counters;
}

}  // namespace splicer::bpf
