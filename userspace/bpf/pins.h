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
    // Whose pins the dir holds when this process opens it.
    enum class Start {
        fresh,      // a start: everything in it is a killed daemon's, removed
        successor,  // `splicer upgrade`'s new process: they are the running old process's
    };
    // Creates `dir` (mode 0700) where absent, checks it (refusing anything else with an error
    // naming it and why), and clears stale pins in it on a fresh start. A successor leaves
    // the old process's pins where they are (it opens the old maps from them, and the old
    // process serves on with them if this start fails) and pins its own under provisional
    // names until took_over(): see pin().
    static Result<PinDir> open(const std::string& dir, const PinDirOwners& owners,
                               Start start = Start::fresh);
    // Unlinks every entry in the pin dir (done by open on a fresh start).
    void remove_stale();
    // The checked pin dir, for opening pins through it (bpf/pinned_map.h).
    [[nodiscard]] int dir_fd() const { return checked_.dir.get(); }

    // Pins `fd` as NAME in the pin dir. A successor pins it as kIncomingPrefix + NAME until
    // took_over(): until the old process handed over, NAME is its pin (`splicer stats` reads
    // its counters there), and a start that fails must leave it so.
    Result<void> pin(int fd, const std::string& name);

    // Unlinks the provisional pins of a successor that is gone before it took over: done by
    // the next successor's open, and by the old process once it learnt that the upgrade
    // failed (a new process that crashed ran no destructor). One upgrade runs at a time: no
    // live process pins such a name then.
    void remove_dead_incoming();

    // Gives the pin dir to the run user (fchown on the checked fd), so the daemon can still
    // unlink its pins after the privilege drop.
    Result<void> hand_over(uid_t uid, gid_t gid, const std::string& user_name);
    // After `splicer upgrade` handed over: the new process re-pinned its own objects under
    // the same names, so this one must not remove them when it exits.
    void leave_to_successor() {
        pinned_.clear();
        owned_ = false;
    }
    // `splicer upgrade`, in the new process once the old one was told it serves: each
    // provisional pin is renamed over its name (one step: `splicer stats` finds the old
    // object or the new one, never none), the old process's pins this one has no object for
    // are removed, and the pins are this process's to remove at its exit. Runs after the
    // privilege drop: a rename or unlink needs only the pin dir, which hand_over gave to the
    // run user. A rename that fails is logged and its provisional pin removed (the old name
    // then still names the old object): the upgrade has happened either way.
    void took_over();

    // A successor's provisional names: no other pin starts so (bpffs refuses a '.' in a
    // name, so the prefix is a word).
    static constexpr const char* kIncomingPrefix = "incoming_";

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
    std::vector<std::string> pinned_;  // final names inside the pin dir
    bool owned_ = true;
    // A successor that has not taken over yet: pins go under provisional names, and only
    // those are removed at its exit (the old process's pins and the pin dir stay).
    bool incoming_ = false;
};

}  // namespace splicer::bpf
