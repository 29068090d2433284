#include "bpf/pins.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

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

Result<PinDir> PinDir::open(const std::string& dir) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        return Error{"creating pin dir " + dir + ": " + errno_text(errno)};
    }
    // Pins left by a daemon that was killed: nothing else may own this dir while we start.
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
        log::notice("stale_pin_removed", {{"path", entry.path().string()}});
        std::filesystem::remove(entry.path(), error);
    }
    UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir_fd) {
        return Error{"opening pin dir " + dir + ": " + errno_text(errno)};
    }
    return PinDir(dir, std::move(dir_fd));
}

Result<void> PinDir::pin(int fd, const std::string& name) {
    const std::string path = dir_ + "/" + name;
    if (bpf_obj_pin(fd, path.c_str()) != 0) {
        return Error{"pinning " + path + ": " + errno_text(errno)};
    }
    pinned_.push_back(name);
    return {};
}

PinDir::PinDir(PinDir&& other) noexcept
    : dir_(std::move(other.dir_)),
      dir_fd_(std::move(other.dir_fd_)),
      pinned_(std::move(other.pinned_)),
      owned_(other.owned_) {
    other.owned_ = false;
}

PinDir& PinDir::operator=(PinDir&& other) noexcept {
    if (this != &other) {
        remove_all();
        dir_ = std::move(other.dir_);
        dir_fd_ = std::move(other.dir_fd_);
        pinned_ = std::move(other.pinned_);
        owned_ = other.owned_;
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
        ::unlinkat(dir_fd_.get(), name.c_str(), 0);
    }
    pinned_.clear();
    // Fails after the privilege drop (the parent is root's): the empty dir then stays.
    ::rmdir(dir_.c_str());
    owned_ = false;
}

}  // namespace splicer::bpf
