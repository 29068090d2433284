#pragma once
// Opening a pin dir without trusting what is at its path. The root-run parts (start-up and
// `splicer stats`) use it before touching anything inside.
//
// Why: bpffs mounted without `mode=` (a plain `mount -t bpf`) has a drwxrwxrwt root, so any
// local user can put something at the pin dir's path before splicer starts: a symlink to a
// directory of theirs or anyone's, a directory of their own, a world-writable one, a pin, a
// mount of another file system. Root following such a link removed the target's files and
// chowned it to the run user. So the last component is opened with O_NOFOLLOW | O_DIRECTORY
// (a link makes the open fail; it is never followed, even if it was swapped in after a check
// or after our own mkdirat) and what was opened is checked through the fd it gave: on bpffs,
// owned by an allowed user, writable by its owner only. Its parent must be owned by root and,
// where others may write to it, sticky, so no one else can rename the pin dir away and put
// theirs in its place. Everything afterwards (unlinkat, fchown, pinning, opening pins) goes
// through these fds, never the path again. Components above the parent are followed: they
// are the administrator's path (/sys/fs/bpf, or the --pin-dir they gave).

#include <sys/types.h>

#include <string>
#include <vector>

#include "splicer/result.h"
#include "splicer/unique_fd.h"

namespace splicer::bpf {

struct PinDirRules {
    bool create = false;        // mkdirat (mode 0700) when absent; the parent must be bpffs
    std::vector<uid_t> owners;  // who may own the pin dir; empty: anyone
    std::string owners_text;    // how errors name them: "root or splicer"
};

struct CheckedPinDir {
    std::string path;  // as given, for messages
    UniqueFd parent;   // the directory holding it
    std::string leaf;  // its name in `parent`
    UniqueFd dir;      // the pin dir itself, checked
};

// Opens and checks `path` (see above). Errors name the path and why it was refused.
Result<CheckedPinDir> open_pin_dir(const std::string& path, const PinDirRules& rules);

// "/proc/self/fd/FD/NAME": a path the kernel resolves through the open directory `dir_fd`
// whatever has happened to its name since, for bpf_obj_pin and bpf_obj_get (Debian 12's
// libbpf 1.1 has no BPF_F_PATH_FD, which Linux 6.5 added for the same purpose).
std::string path_through_fd(int dir_fd, const std::string& name = "");

}  // namespace splicer::bpf
