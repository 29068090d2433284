#pragma once
// BPF objects pinned in bpffs under the pin dir, so `splicer stats` (another process) can read
// the running daemon's counters. PinDir owns the pins: it removes them when destroyed, and
// removes stale ones that a killed daemon left behind before pinning anew. It unlinks through
// a directory fd opened at start-up: after the privilege drop the daemon can no longer walk
// /sys/fs/bpf (mode 0700, root), but may still unlink in the pin dir it was given.

#include <string>
#include <vector>

#include "splicer/result.h"
#include "splicer/unique_fd.h"

namespace splicer::bpf {

// Mounts bpffs on /sys/fs/bpf when nothing is mounted there (needs root).
Result<void> ensure_bpffs_mounted(const std::string& pin_dir);

class PinDir {
public:
    // Creates `dir` (and clears stale pins in it) for pinning.
    static Result<PinDir> open(const std::string& dir);

    // Pins `fd` as dir/name.
    Result<void> pin(int fd, const std::string& name);

    [[nodiscard]] const std::string& path() const { return dir_; }

    PinDir(PinDir&& other) noexcept;
    PinDir& operator=(PinDir&& other) noexcept;
    PinDir(const PinDir&) = delete;
    PinDir& operator=(const PinDir&) = delete;
    ~PinDir();

private:
    PinDir(std::string dir, UniqueFd dir_fd) : dir_(std::move(dir)), dir_fd_(std::move(dir_fd)) {}
    void remove_all();
    std::string dir_;
    UniqueFd dir_fd_;
    std::vector<std::string> pinned_;  // names inside dir_
    bool owned_ = true;
};

}  // namespace splicer::bpf
