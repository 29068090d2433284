#pragma once
// The privilege drop after start-up: once bpffs is mounted, the BPF program loaded and pinned
// and the ports bound, the daemon needs no privilege at all: sockhash and hash-map updates
// through map fds it already holds need no capability on Linux >= 6.5 (checks sit in
// map_create/prog_load; DESIGN.md kernel fact 5). It becomes an unprivileged user with no
// capabilities (effective, permitted, inheritable, ambient and bounding sets all empty) and
// no_new_privs set, so nothing it executes or is tricked into doing can regain them.
// One exception, asked for by the config: transparent mode (README "Transparent mode") sets
// IP_TRANSPARENT on every backend socket, which needs CAP_NET_RAW (or CAP_NET_ADMIN) at
// that moment, so the daemon then keeps CAP_NET_RAW, effective and permitted, and nothing
// else (sslh keeps the same one).

#include <sys/types.h>

#include <optional>
#include <string>

#include "splicer/result.h"

namespace splicer::security {

// Capabilities the daemon keeps after the drop.
enum class KeptCapabilities {
    none,
    net_raw,  // transparent mode
};

struct RunUser {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;
};

// Whom to run as: `configured` (Config::user) if given, which must exist; else the `splicer`
// system user that scripts/install-deps creates; else `nobody`.
Result<RunUser> resolve_run_user(const std::optional<std::string>& configured);

// Whom `splicer run` becomes after start-up: resolve_run_user when running as root; nullopt
// when not root (nothing to drop). Known before start-up so that the pin dir may belong to
// that user (a previous run handed it over) and nobody else.
Result<std::optional<RunUser>> user_to_become(const std::optional<std::string>& configured);

// Switches to `user` (groups, gid, uid), empties every capability set but `kept`, sets
// no_new_privs, and checks the result: an error if uid 0 or any other capability survived,
// or if `kept` is not held before the drop (a bounding set without it, e.g. systemd's).
Result<void> drop_privileges(const RunUser& user,
                             KeptCapabilities kept = KeptCapabilities::none);

// The privileged helper's narrowing (privsep/helper.h): it stays uid 0, to open root-only
// files, but keeps only the capabilities that reading a file can need, CAP_DAC_OVERRIDE and
// CAP_DAC_READ_SEARCH (a file or directory of another owner), where held: every other one
// leaves the bounding, effective, permitted, inheritable and ambient sets, and no_new_privs
// is set, so nothing it executes regains them.
Result<void> keep_only_file_reading();

// What `splicer run` calls once start-up is done (the pin dir already handed over to `user`,
// see bpf::PinDir::hand_over): drops to `user` and logs one line; with no user (not started
// as root) changes nothing and says so.
Result<void> drop_after_start_up(const std::optional<RunUser>& user,
                                 KeptCapabilities kept = KeptCapabilities::none);

}  // namespace splicer::security
