#pragma once
// BPF objects pinned in bpffs under the pin dir, so `splicer stats` (another process) can read
// the running daemon's counters. PinDir owns the pins: it removes them when destroyed, and
// removes stale ones that a killed daemon left behind before pinning anew.
//
// The pin dir is opened once, checked (bpf/pin_dir_check.h: no link followed, on bpffs, owned
// by root or the run user, writable by its owner only) and from then on reached only through
// that fd: stale pins are removed with unlinkat, pins made through /proc/self/fd/N/NAME, the
// dir handed to the run user with fchown. After the privilege drop the daemon can no longer
// walk /sys/fs/bpf (mode 0700, root), but may still unlink in the pin dir it was given.
//
// Handing the dir over lets the run user (the daemon itself, if subverted) rename, replace or
// relink every pin in it: root's `splicer stats` therefore checks every object it opens
// (bpf/pinned_map.h) and trusts none of them for what its name says.

#include <sys/types.h>

#include <string>
#include <vector>

#include "bpf/pin_dir_check.h"
#include "splicer/result.h"

namespace splicer::bpf {

// Mounts bpffs on /sys/fs/bpf when nothing is mounted there (needs root).
Result<void> ensure_bpffs_mounted(const std::string& pin_dir);

// Who may own an existing pin dir at start-up: the starting user (root) and the run user (a
// previous run handed it over).
struct PinDirOwners {
    std::vector<uid_t> uids;
    std::string text;  // "root or splicer", for the error
};

class PinDir {
public:
    // Creates `dir` (mode 0700) where absent, checks it (refusing anything else with an error
    // naming it and why), and clears stale pins in it, unless `keep_stale`: the new process
    // of `splicer upgrade` first opens the old one's maps from them, then clears them, and
    // removes nothing at its exit until took_over() (a start that fails leaves the old
    // process's maps pinned: it serves on, and a later upgrade reuses them).
    static Result<PinDir> open(const std::string& dir, const PinDirOwners& owners,
                               bool keep_stale = false);
    // Unlinks every entry in the pin dir (done by open unless asked not to).
    void remove_stale();
    // The checked pin dir, for opening pins through it (bpf/pinned_map.h).
    [[nodiscard]] int dir_fd() const { return checked_.dir.get(); }

    // Pins `fd` as NAME in the pin dir.
    Result<void> pin(int fd, const std::string& name);

    // Gives the pin dir to the run user (fchown on the checked fd), so the daemon can still
    // unlink its pins after the privilege drop.
    Result<void> hand_over(uid_t uid, gid_t gid, const std::string& user_name);
    // After `splicer upgrade` handed over: the new process re-pinned its own objects under
    // the same names, so this one must not remove them when it exits.
    void leave_to_successor() {
        pinned_.clear();
        owned_ = false;
    }
    // `splicer upgrade`, in the new process once the old one was told it serves: the pins
    // are this process's to remove at its exit from now on.
    void took_over() { owned_ = true; }

    [[nodiscard]] const std::string& path() const { return checked_.path; }

    PinDir(PinDir&& other) noexcept;
    PinDir& operator=(PinDir&& other) noexcept;
    PinDir(const PinDir&) = delete;
    PinDir& operator=(const PinDir&) = delete;
    ~PinDir();

private:
    explicit PinDir(CheckedPinDir checked) : checked_(std::move(checked)) {}
    void remove_all();
    CheckedPinDir checked_;
    std::vector<std::string> pinned_;  // names inside the pin dir
    bool owned_ = true;
};

}  // namespace splicer::bpf
