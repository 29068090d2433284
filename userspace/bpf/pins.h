#pragma once
// BPF objects pinned in bpffs under the pin dir, so `splicer stats` (another process) can read
// the running daemon's counters. PinDir owns the pins: it removes them when destroyed, and
// removes stale ones that a killed daemon left behind before pinning anew.

#include <string>
#include <vector>

#include "splicer/result.h"

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
    explicit PinDir(std::string dir) : dir_(std::move(dir)) {}
    void remove_all();
    std::string dir_;
    std::vector<std::string> pinned_;
    bool owned_ = true;
};

}  // namespace splicer::bpf
