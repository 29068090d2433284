#include "bpf/pinned_map.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "bpf/pin_dir_check.h"

namespace splicer::bpf {
namespace {

std::string describe(std::uint32_t type, std::uint32_t key_size, std::uint32_t value_size,
                     std::uint32_t max_entries) {
    return "type " + std::to_string(type) + ", key size " + std::to_string(key_size) +
           ", value size " + std::to_string(value_size) + ", max_entries " +
           (max_entries == kAnyMaxEntries ? std::string("any") : std::to_string(max_entries));
}

// What an fd is, from its /proc link: "anon_inode:bpf-map" for a map.
std::string fd_kind(int fd) {
    std::array<char, 64> target{};
    const std::string link = "/proc/self/fd/" + std::to_string(fd);
    const ssize_t n = ::readlink(link.c_str(), target.data(), target.size() - 1);
    return n > 0 ? std::string(target.data(), static_cast<std::size_t>(n)) : "";
}

}  // namespace

bool pin_present(int dir_fd, const std::string& name) {
    struct stat info {};
    return ::fstatat(dir_fd, name.c_str(), &info, AT_SYMLINK_NOFOLLOW) == 0;
}

Result<UniqueFd> open_pinned_map(int dir_fd, const std::string& dir_path, const std::string& name,
                                 const MapShape& shape, const PinAccess& access) {
    const std::string shown = dir_path + "/" + name;
    // O_PATH opens nothing behind the entry (no FIFO blocks, no device opens); with
    // O_NOFOLLOW a link yields the link itself, which fstat then reports.
    const UniqueFd entry(::openat(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!entry) {
        return errno_error(shown);
    }
    struct stat info {};
    if (::fstat(entry.get(), &info) != 0) {
        return errno_error(shown);
    }
    if (S_ISLNK(info.st_mode)) {
        return Error{shown + " is a symbolic link: refused"};
    }
    if (access.owner && info.st_uid != *access.owner) {
        return Error{shown + " was pinned by uid " + std::to_string(info.st_uid) + ", not uid " +
                     std::to_string(*access.owner) + ": refused"};
    }
    struct statfs fs {};
    // bpffs keeps pinned objects as regular files.
    if (!S_ISREG(info.st_mode) || ::fstatfs(entry.get(), &fs) != 0 || fs.f_type != BPF_FS_MAGIC) {
        return Error{shown + " is not a pinned object: refused"};
    }
    const std::string through_fd = path_through_fd(entry.get());
    // Filled by hand: LIBBPF_OPTS is a GNU statement expression that clang's -Wpedantic
    // (the fuzz build) refuses in C++.
    struct bpf_obj_get_opts options {};
    options.sz = sizeof(options);
    options.file_flags = access.writable ? 0U : static_cast<__u32>(BPF_F_RDONLY);
    UniqueFd map(bpf_obj_get_opts(through_fd.c_str(), &options));
    if (!map) {
        if (errno == EINVAL && !access.writable) {
            // A pinned link opens read-write only.
            return Error{shown + " is not a BPF map (a link): refused"};
        }
        return errno_error(std::string("opening ") + shown +
                           (access.writable ? "" : " read-only"));
    }
    // A pinned program opens whatever the flags: bpf_obj_get_info_by_fd would then fill our
    // bpf_map_info with a bpf_prog_info.
    if (fd_kind(map.get()) != "anon_inode:bpf-map") {
        return Error{shown + " is not a BPF map: refused"};
    }
    bpf_map_info map_info{};
    __u32 length = sizeof(map_info);
    if (bpf_obj_get_info_by_fd(map.get(), &map_info, &length) != 0) {
        return errno_error("reading what " + shown + " is");
    }
    const bool entries_fit =
        shape.max_entries == kAnyMaxEntries || map_info.max_entries == shape.max_entries;
    if (map_info.type != shape.type || map_info.key_size != shape.key_size ||
        map_info.value_size != shape.value_size || !entries_fit) {
        return Error{
            shown + " is not the map splicer pins there: it has " +
            describe(map_info.type, map_info.key_size, map_info.value_size, map_info.max_entries) +
            " (expected " +
            describe(shape.type, shape.key_size, shape.value_size, shape.max_entries) + ")"};
    }
    if (shape.map_flags && map_info.map_flags != *shape.map_flags) {
        return Error{shown + " is not the map splicer pins there: its flags are " +
                     std::to_string(map_info.map_flags) + " (expected " +
                     std::to_string(*shape.map_flags) + ")"};
    }
    if (std::strncmp(map_info.name, shape.name, sizeof(map_info.name)) != 0) {
        return Error{shown + " is not the map splicer pins there: it is named \"" +
                     std::string(map_info.name, strnlen(map_info.name, sizeof(map_info.name))) +
                     "\" (expected \"" + shape.name + "\")"};
    }
    return map;
}

std::uint32_t map_max_entries(int map_fd) {
    bpf_map_info map_info{};
    __u32 length = sizeof(map_info);
    return bpf_obj_get_info_by_fd(map_fd, &map_info, &length) == 0 ? map_info.max_entries : 0;
}

}  // namespace splicer::bpf
