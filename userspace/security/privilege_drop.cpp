#include "security/privilege_drop.h"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "splicer/log.h"

namespace splicer::security {
namespace {

std::optional<RunUser> lookup(const std::string& name) {
    const passwd* entry = ::getpwnam(name.c_str());
    if (entry == nullptr) {
        return std::nullopt;
    }
    return RunUser{name, entry->pw_uid, entry->pw_gid};
}

int last_capability() {
    std::ifstream file("/proc/sys/kernel/cap_last_cap");
    int last = CAP_LAST_CAP;
    file >> last;
    return last;
}

// The bounding set limits what any later execve could gain; it needs CAP_SETPCAP, so it is
// emptied while still root.
Result<void> empty_bounding_set() {
    for (int capability = 0; capability <= last_capability(); ++capability) {
        if (::prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 && errno != EINVAL) {
            return errno_error("dropping capability " + std::to_string(capability) +
                               " from the bounding set");
        }
    }
    return {};
}

// glibc has no capset wrapper; libcap would be a dependency for two system calls.
Result<void> empty_capability_sets() {
    __user_cap_header_struct header{.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (::syscall(SYS_capset, &header, data) != 0) {
        return errno_error("capset");
    }
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
        return errno_error("clearing ambient capabilities");
    }
    return {};
}

Result<void> check_dropped(const RunUser& user) {
    uid_t real = 0;
    uid_t effective = 0;
    uid_t saved = 0;
    if (::getresuid(&real, &effective, &saved) != 0 || real != user.uid ||
        effective != user.uid || saved != user.uid || real == 0) {
        return Error{"uid did not change to " + std::to_string(user.uid)};
    }
    __user_cap_header_struct header{.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (::syscall(SYS_capget, &header, data) != 0) {
        return errno_error("capget");
    }
    for (const auto& word : data) {
        if (word.effective != 0 || word.permitted != 0 || word.inheritable != 0) {
            return Error{"capabilities survived the uid change"};
        }
    }
    return {};
}

}  // namespace

Result<RunUser> resolve_run_user(const std::optional<std::string>& configured) {
    if (configured) {
        if (auto user = lookup(*configured)) {
            return *user;
        }
        return Error{"user \"" + *configured + "\" does not exist"};
    }
    for (const char* name : {"splicer", "nobody"}) {
        if (auto user = lookup(name)) {
            return *user;
        }
    }
    return Error{"neither user \"splicer\" nor \"nobody\" exists; set `user` in the config"};
}

Result<std::optional<RunUser>> user_to_become(const std::optional<std::string>& configured) {
    if (::geteuid() != 0) {
        return std::optional<RunUser>();
    }
    auto user = resolve_run_user(configured);
    if (!user) {
        return user.error();
    }
    return std::optional<RunUser>(std::move(user).value());
}

Result<void> drop_privileges(const RunUser& user) {
    if (user.uid == 0) {
        return Error{"user \"" + user.name + "\" is root: nothing would be dropped"};
    }
    if (auto bounded = empty_bounding_set(); !bounded) {
        return bounded;
    }
    if (::setgroups(0, nullptr) != 0) {
        return errno_error("setgroups");
    }
    if (::setresgid(user.gid, user.gid, user.gid) != 0) {
        return errno_error("setresgid " + std::to_string(user.gid));
    }
    // Leaving uid 0 for good clears the permitted and effective sets (no SECBIT_KEEP_CAPS).
    if (::setresuid(user.uid, user.uid, user.uid) != 0) {
        return errno_error("setresuid " + std::to_string(user.uid));
    }
    if (auto emptied = empty_capability_sets(); !emptied) {
        return emptied;
    }
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        return errno_error("PR_SET_NO_NEW_PRIVS");
    }
#if defined(__SANITIZE_ADDRESS__)
    // The uid change made the process non-dumpable, and LeakSanitizer's exit-time check
    // (a tracer thread attaching to this process) then fails. Sanitizer builds only: a
    // production daemon stays non-dumpable, out of reach of other processes of its user.
    ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
#endif
    return check_dropped(user);
}

Result<void> drop_after_start_up(const std::optional<RunUser>& user) {
    if (!user) {
        log::notice("privileges_kept", {{"reason", "not started as root"}});
        return {};
    }
    if (auto dropped = drop_privileges(*user); !dropped) {
        return dropped.error().with_context("privilege drop to " + user->name);
    }
    log::info("privileges_dropped", {{"user", user->name},
                                     {"uid", std::to_string(user->uid)},
                                     {"gid", std::to_string(user->gid)}});
    return {};
}

}  // namespace splicer::security
