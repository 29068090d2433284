#pragma once
// Opening a map that another process pinned, for `splicer stats` (root). The pin dir belongs
// to the daemon's run user (bpf/pins.h): that user can rename one pin over another, put a
// link or a directory in a pin's place, or pin any map it holds under any name. Root must
// never follow such a link, never read a map by what its name promises, and never read more
// than it allocated: renaming `counters` (per-CPU, 208-byte values) to `daemon` (112 bytes)
// once made stats copy 208 B x CPUs into a 112-byte struct and crash.
//
// So a pin is opened by fd, not by path: openat(O_PATH | O_NOFOLLOW) in the checked pin dir
// (a link is refused, not followed), fstat says it is a bpffs object, and bpf_obj_get on
// /proc/self/fd/N reaches exactly that inode, read-only (BPF_F_RDONLY: stats writes nothing).
// The flag does not keep a pinned program out (Linux 6.18 opens one whatever the flags; only
// links are refused), so the fd's kind is checked: it must be a map, and one whose type, key
// size, value size, max_entries and name are the expected ones. What is inside a
// map that passes is the daemon's word: its user can write into it, so the numbers are only
// as true as the daemon, but root reads them safely.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "splicer/result.h"
#include "splicer/unique_fd.h"

namespace splicer::bpf {

// What a pinned map must be. Sizes in bytes; name as the kernel keeps it (15 chars at most).
struct MapShape {
    std::uint32_t type = 0;  // BPF_MAP_TYPE_*
    std::uint32_t key_size = 0;
    std::uint32_t value_size = 0;
    std::uint32_t max_entries = 0;  // kAnyMaxEntries: the caller checks it (map_max_entries)
    const char* name = "";
    std::optional<std::uint32_t> map_flags;  // BPF_F_*; unset: not checked
};
inline constexpr std::uint32_t kAnyMaxEntries = 0;

// How a pin is opened. `splicer stats` reads (the default). A new process at `splicer
// upgrade` reuses the sockmap plane's maps (bpf/reused_maps.h): it writes to them, and takes
// only pins its starting user made: the run user (the pin dir is its) can rename, unlink and
// pin, but every pin it makes is its own, while the old process pinned its maps as root
// before the privilege drop.
struct PinAccess {
    bool writable = false;
    std::optional<uid_t> owner;  // the pin's file owner must be this uid
};

// True when anything (a link, a directory included) is at NAME in the pin dir `dir_fd`.
bool pin_present(int dir_fd, const std::string& name);

// Opens the map pinned as NAME in the checked pin dir `dir_fd` (shown as `dir_path`),
// read-only unless `access` says otherwise, refusing anything that is not a map of `shape`
// (or, with `access.owner`, not pinned by that uid). Errors start with the pin's path and
// say what was found.
Result<UniqueFd> open_pinned_map(int dir_fd, const std::string& dir_path, const std::string& name,
                                 const MapShape& shape, const PinAccess& access = {});

// The max_entries of the map `map_fd` (0 when the kernel does not say).
std::uint32_t map_max_entries(int map_fd);

}  // namespace splicer::bpf
