#include "bpf/pins.h"

#include <bpf/bpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "splicer/log.h"

namespace splicer::bpf {
namespace {

bool is_bpffs(const std::string& path) {
    struct statfs info {};
    return ::statfs(path.c_str(), &info) == 0 && info.f_type == BPF_FS_MAGIC;
}

// The names in the directory `dir_fd` (not . and ..), read through a duplicate fd: closedir
// closes the fd it was given.
std::vector<std::string> entries(int dir_fd) {
    std::vector<std::string> names;
    const int copy = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) {
        return names;
    }
    DIR* dir = ::fdopendir(copy);
    if (dir == nullptr) {
        ::close(copy);
        return names;
    }
    ::rewinddir(dir);
    while (const dirent* entry = ::readdir(dir)) {
        const std::string name = entry->d_name;
        if (name != "." && name != "..") {
            names.push_back(name);
        }
    }
    ::closedir(dir);
    return names;
}

}  // namespace

Result<void> ensure_bpffs_mounted(const std::string& pin_dir) {
    const std::string parent = std::filesystem::path(pin_dir).parent_path().string();
    if (is_bpffs(parent)) {
        return {};
    }
    if (parent != "/sys/fs/bpf") {
        return Error{parent + " is not a bpffs mount"};
    }
    if (::mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") != 0) {
        return Error{"mounting bpffs on /sys/fs/bpf: " + errno_text(errno)};
    }
    log::notice("bpffs_mounted", {{"path", "/sys/fs/bpf"}});
    return {};
}

Result<PinDir> PinDir::open(const std::string& dir, const PinDirOwners& owners, Start start) {
    auto checked =
        open_pin_dir(dir, {.create = true, .owners = owners.uids, .owners_text = owners.text});
    if (!checked) {
        return checked.error();
    }
    PinDir pins(std::move(checked).value());
    if (start == Start::successor) {
        pins.incoming_ = true;
        pins.remove_dead_incoming();
    } else {
        pins.remove_stale();
    }
    return pins;
}

// Pins left by a daemon that was killed: the dir is ours (checked), so everything in it is
// stale. unlinkat removes a link itself, never what it points to; a subdirectory stays.
void PinDir::remove_stale() {
    for (const std::string& name : entries(checked_.dir.get())) {
        const std::string shown = checked_.path + "/" + name;
        if (::unlinkat(checked_.dir.get(), name.c_str(), 0) == 0) {
            log::notice("stale_pin_removed", {{"path", shown}});
        } else {
            log::warning("stale_pin_kept", {{"path", shown}, {"error", errno_text(errno)}});
        }
    }
}

void PinDir::remove_dead_incoming() {
    for (const std::string& name : entries(checked_.dir.get())) {
        if (name.starts_with(kIncomingPrefix) &&
            ::unlinkat(checked_.dir.get(), name.c_str(), 0) == 0) {
            log::notice("stale_pin_removed", {{"path", checked_.path + "/" + name}});
        }
    }
}

Result<void> PinDir::pin(int fd, const std::string& name) {
    const std::string stored = incoming_ ? kIncomingPrefix + name : name;
    // Through the checked dir's fd: the kernel never walks the pin dir's path again.
    const std::string path = path_through_fd(checked_.dir.get(), stored);
    if (bpf_obj_pin(fd, path.c_str()) != 0) {
        return Error{"pinning " + checked_.path + "/" + stored + ": " + errno_text(errno)};
    }
    pinned_.push_back(name);
    return {};
}

void PinDir::took_over() {
    owned_ = true;
    if (!incoming_) {
        return;
    }
    incoming_ = false;
    const int dir = checked_.dir.get();
    for (const std::string& name : pinned_) {
        const std::string incoming = kIncomingPrefix + name;
        if (::renameat(dir, incoming.c_str(), dir, name.c_str()) != 0) {
            log::warning("pin_not_taken_over",
                         {{"path", checked_.path + "/" + name}, {"error", errno_text(errno)}});
            ::unlinkat(dir, incoming.c_str(), 0);
        }
    }
    // The old process's pins of objects this one does not have (it ran another plane).
    for (const std::string& name : entries(dir)) {
        if (std::find(pinned_.begin(), pinned_.end(), name) == pinned_.end() &&
            ::unlinkat(dir, name.c_str(), 0) == 0) {
            log::notice("stale_pin_removed", {{"path", checked_.path + "/" + name}});
        }
    }
}

Result<void> PinDir::hand_over(uid_t uid, gid_t gid, const std::string& user_name) {
    if (::fchown(checked_.dir.get(), uid, gid) != 0) {
        return errno_error("giving pin dir " + checked_.path + " to " + user_name);
    }
    return {};
}

PinDir::PinDir(PinDir&& other) noexcept
    : checked_(std::move(other.checked_)),
      pinned_(std::move(other.pinned_)),
      owned_(other.owned_),
      incoming_(other.incoming_) {
    other.owned_ = false;
}

PinDir& PinDir::operator=(PinDir&& other) noexcept {
    if (this != &other) {
        remove_all();
        checked_ = std::move(other.checked_);
        pinned_ = std::move(other.pinned_);
        owned_ = other.owned_;
        incoming_ = other.incoming_;
        other.owned_ = false;
    }
    return *this;
}

PinDir::~PinDir() { remove_all(); }

void PinDir::remove_all() {
    if (!owned_) {
        return;
    }
    for (const std::string& name : pinned_) {
        const std::string stored = incoming_ ? kIncomingPrefix + name : name;
        ::unlinkat(checked_.dir.get(), stored.c_str(), 0);
    }
    if (incoming_) {
        // A successor whose start failed: the old process serves on, with its pins and dir.
        pinned_.clear();
        owned_ = false;
        return;
    }
    pinned_.clear();
    // Fails after the privilege drop where the parent is root's (/sys/fs/bpf, mode 0700): the
    // empty dir then stays and is reused at the next start. An entry only, never a link's
    // target; only an empty directory goes.
    ::unlinkat(checked_.parent.get(), checked_.leaf.c_str(), AT_REMOVEDIR);
    owned_ = false;
}

}  // namespace splicer::bpf
