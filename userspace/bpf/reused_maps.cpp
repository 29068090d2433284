#include "bpf/reused_maps.h"

#include <linux/bpf.h>

#include "bpf/pinned_map.h"

namespace splicer::bpf {
namespace {

// As bpf/splice.bpf.c declares them (no map flags: the hash maps are preallocated).
MapShape sockets_shape() {
    return {.type = BPF_MAP_TYPE_SOCKHASH,
            .key_size = sizeof(splicer_cookie),
            .value_size = sizeof(__u64),
            .max_entries = kAnyMaxEntries,  // the old process's choice, checked below
            .name = "sockets",
            .map_flags = 0U};
}

MapShape hash_shape(const char* name, std::uint32_t value_size, std::uint32_t max_entries) {
    return {.type = BPF_MAP_TYPE_HASH,
            .key_size = sizeof(splicer_cookie),
            .value_size = value_size,
            .max_entries = max_entries,
            .name = name,
            .map_flags = 0U};
}

MapShape counters_shape() {
    return {.type = BPF_MAP_TYPE_PERCPU_ARRAY,
            .key_size = sizeof(__u32),
            .value_size = sizeof(splicer_counters),
            .max_entries = 1,
            .name = "counters",
            .map_flags = 0U};
}

}  // namespace

Result<std::optional<ReusedMaps>> open_maps_to_reuse(int dir_fd, const std::string& dir_path,
                                                     uid_t owner) {
    if (!pin_present(dir_fd, "sockets")) {
        return std::optional<ReusedMaps>();
    }
    const PinAccess access{.writable = true, .owner = owner};
    auto sockets = open_pinned_map(dir_fd, dir_path, "sockets", sockets_shape(), access);
    if (!sockets) {
        return sockets.error();
    }
    const std::uint32_t max_sockets = map_max_entries(sockets->get());
    if (max_sockets < SPLICER_MIN_SOCKETS || max_sockets > SPLICER_SOCKETS_LIMIT) {
        return Error{dir_path + "/sockets holds " + std::to_string(max_sockets) +
                     " sockets, out of range " + std::to_string(SPLICER_MIN_SOCKETS) + ".." +
                     std::to_string(SPLICER_SOCKETS_LIMIT) + ": refused"};
    }
    auto peers = open_pinned_map(dir_fd, dir_path, "peers",
                                 hash_shape("peers", sizeof(splicer_link), max_sockets), access);
    if (!peers) {
        return peers.error();
    }
    auto copied =
        open_pinned_map(dir_fd, dir_path, "copied",
                        hash_shape("copied", sizeof(splicer_copied), max_sockets), access);
    if (!copied) {
        return copied.error();
    }
    auto counters = open_pinned_map(dir_fd, dir_path, "counters", counters_shape(), access);
    if (!counters) {
        return counters.error();
    }
    return std::optional<ReusedMaps>(ReusedMaps{.sockets = std::move(sockets).value(),
                                                .peers = std::move(peers).value(),
                                                .copied = std::move(copied).value(),
                                                .counters = std::move(counters).value(),
                                                .max_sockets = max_sockets});
}

}  // namespace splicer::bpf
