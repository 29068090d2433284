#include "bpf/pin_dir_check.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string>
#include <utility>

namespace splicer::bpf {
namespace {

bool on_bpffs(int fd) {
    struct statfs info {};
    return ::fstatfs(fd, &info) == 0 && info.f_type == BPF_FS_MAGIC;
}

std::string octal_mode(mode_t mode) {
    char text[8];
    std::snprintf(text, sizeof(text), "%04o", static_cast<unsigned>(mode & 07777));
    return text;
}

// The pin dir's parent and name: "/sys/fs/bpf/splicer/" -> "/sys/fs/bpf", "splicer".
Result<std::pair<std::string, std::string>> split(const std::string& path) {
    std::string trimmed = path;
    while (trimmed.size() > 1 && trimmed.back() == '/') {
        trimmed.pop_back();
    }
    const std::size_t slash = trimmed.rfind('/');
    std::string parent = slash == std::string::npos ? "." : trimmed.substr(0, slash);
    std::string leaf = slash == std::string::npos ? trimmed : trimmed.substr(slash + 1);
    if (parent.empty()) {
        parent = "/";
    }
    if (leaf.empty() || leaf == "." || leaf == "..") {
        return Error{"pin dir \"" + path + "\" names no directory of its own"};
    }
    return std::pair{std::move(parent), std::move(leaf)};
}

// The parent decides who can rename the pin dir or replace it: root alone, or, where others
// may write, only with the sticky bit (then only the entry's owner can).
Result<void> check_parent(int fd, const std::string& path, const std::string& parent) {
    struct stat info {};
    if (::fstat(fd, &info) != 0) {
        return errno_error("pin dir " + path + ": its parent " + parent);
    }
    if (info.st_uid != 0 && info.st_uid != ::geteuid()) {
        return Error{"pin dir " + path + ": its parent " + parent + " is owned by uid " +
                     std::to_string(info.st_uid) + ", not root: refused"};
    }
    if ((info.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (info.st_mode & S_ISVTX) == 0) {
        return Error{"pin dir " + path + ": its parent " + parent +
                     " is writable by others and not sticky (mode " + octal_mode(info.st_mode) +
                     "): refused"};
    }
    return {};
}

Result<void> check_dir(int fd, const std::string& path, const PinDirRules& rules) {
    if (!on_bpffs(fd)) {
        return Error{"pin dir " + path + " is not on bpffs: refused"};
    }
    struct stat info {};
    if (::fstat(fd, &info) != 0) {
        return errno_error("pin dir " + path);
    }
    if (!rules.owners.empty() &&
        std::find(rules.owners.begin(), rules.owners.end(), info.st_uid) == rules.owners.end()) {
        return Error{"pin dir " + path + " is owned by uid " + std::to_string(info.st_uid) +
                     ", not " + rules.owners_text + ": refused"};
    }
    if ((info.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        return Error{"pin dir " + path + " is writable by group or others (mode " +
                     octal_mode(info.st_mode) + "): refused"};
    }
    return {};
}

}  // namespace

Result<CheckedPinDir> open_pin_dir(const std::string& path, const PinDirRules& rules) {
    auto names = split(path);
    if (!names) {
        return names.error();
    }
    auto& [parent, leaf] = *names;
    CheckedPinDir checked{.path = path, .leaf = leaf};
    checked.parent.reset(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!checked.parent) {
        return errno_error("pin dir " + path + ": opening its parent " + parent);
    }
    if (auto checked_parent = check_parent(checked.parent.get(), path, parent); !checked_parent) {
        return checked_parent.error();
    }
    if (rules.create) {
        if (!on_bpffs(checked.parent.get())) {
            return Error{"pin dir " + path + ": its parent " + parent + " is not on bpffs"};
        }
        if (::mkdirat(checked.parent.get(), leaf.c_str(), 0700) != 0 && errno != EEXIST) {
            return errno_error("creating pin dir " + path);
        }
    }
    // Whatever is there now, created by us a moment ago or not: a link fails the open.
    checked.dir.reset(::openat(checked.parent.get(), leaf.c_str(),
                               O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!checked.dir) {
        const int error = errno;
        if (error != ELOOP && error != ENOTDIR) {
            return errno_error("opening pin dir " + path, error);
        }
        // O_NOFOLLOW | O_DIRECTORY on a link fails with ENOTDIR (the type check comes first),
        // so look again, without following, only to say which it was.
        struct stat info {};
        const bool link =
            ::fstatat(checked.parent.get(), leaf.c_str(), &info, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISLNK(info.st_mode);
        return Error{"pin dir " + path +
                     (link ? " is a symbolic link: refused" : " is not a directory: refused")};
    }
    if (auto checked_dir = check_dir(checked.dir.get(), path, rules); !checked_dir) {
        return checked_dir.error();
    }
    return checked;
}

std::string path_through_fd(int dir_fd, const std::string& name) {
    std::string path = "/proc/self/fd/" + std::to_string(dir_fd);
    return name.empty() ? path : path + "/" + name;
}

}  // namespace splicer::bpf
