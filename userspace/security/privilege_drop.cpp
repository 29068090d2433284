#include "security/privilege_drop.h"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
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

// The capability bits `kept` stands for, as capset's two 32-bit words.
std::array<std::uint32_t, 2> kept_bits(KeptCapabilities kept) {
    std::array<std::uint32_t, 2> bits{};
    if (kept == KeptCapabilities::net_raw) {
        bits[CAP_TO_INDEX(CAP_NET_RAW)] |= CAP_TO_MASK(CAP_NET_RAW);
    }
    return bits;
}

Result<std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3>> capabilities() {
    __user_cap_header_struct header{.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3> data{};
    if (::syscall(SYS_capget, &header, data.data()) != 0) {
        return errno_error("capget");
    }
    return data;
}

// Before the drop: what is to be kept must be held (permitted) now, since nothing can add
// it later. Started by systemd, the unit's CapabilityBoundingSet decides.
Result<void> check_keepable(KeptCapabilities kept) {
    const auto bits = kept_bits(kept);
    auto held = capabilities();
    if (!held) {
        return held.error();
    }
    for (std::size_t i = 0; i < bits.size(); ++i) {
        if ((held.value()[i].permitted & bits[i]) != bits[i]) {
            return Error{
                "transparent mode needs CAP_NET_RAW, which this process does not have "
                "(systemd: add the splicer.service.d/transparent.conf drop-in)"};
        }
    }
    return {};
}

// glibc has no capset wrapper; libcap would be a dependency for two system calls.
// Every set empty but `kept` in effective and permitted.
Result<void> empty_capability_sets(KeptCapabilities kept) {
    const auto bits = kept_bits(kept);
    __user_cap_header_struct header{.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    for (std::size_t i = 0; i < bits.size(); ++i) {
        data[i].effective = bits[i];
        data[i].permitted = bits[i];
    }
    if (::syscall(SYS_capset, &header, data) != 0) {
        return errno_error("capset");
    }
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
        return errno_error("clearing ambient capabilities");
    }
    return {};
}

Result<void> check_dropped(const RunUser& user, KeptCapabilities kept) {
    uid_t real = 0;
    uid_t effective = 0;
    uid_t saved = 0;
    if (::getresuid(&real, &effective, &saved) != 0 || real != user.uid ||
        effective != user.uid || saved != user.uid || real == 0) {
        return Error{"uid did not change to " + std::to_string(user.uid)};
    }
    const auto bits = kept_bits(kept);
    auto held = capabilities();
    if (!held) {
        return held.error();
    }
    for (std::size_t i = 0; i < bits.size(); ++i) {
        const __user_cap_data_struct& word = held.value()[i];
        if (word.effective != bits[i] || word.permitted != bits[i] || word.inheritable != 0) {
            return Error{kept == KeptCapabilities::none
                             ? "capabilities survived the uid change"
                             : "capabilities other than CAP_NET_RAW survived the uid change, "
                               "or CAP_NET_RAW did not"};
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

Result<void> drop_privileges(const RunUser& user, KeptCapabilities kept) {
    if (user.uid == 0) {
        return Error{"user \"" + user.name + "\" is root: nothing would be dropped"};
    }
    if (auto keepable = check_keepable(kept); !keepable) {
        return keepable;
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
    // Leaving uid 0 for good clears the permitted and effective sets, unless keep-caps is
    // set (this thread only): then permitted survives and capset below cuts it to `kept`.
    const bool keep = kept != KeptCapabilities::none;
    if (keep && ::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) {
        return errno_error("PR_SET_KEEPCAPS");
    }
    if (::setresuid(user.uid, user.uid, user.uid) != 0) {
        return errno_error("setresuid " + std::to_string(user.uid));
    }
    if (keep && ::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) {
        return errno_error("PR_SET_KEEPCAPS off");
    }
    if (auto emptied = empty_capability_sets(kept); !emptied) {
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
    return check_dropped(user, kept);
}

Result<void> keep_only_file_reading() {
    constexpr std::uint64_t kReading =
        (std::uint64_t{1} << CAP_DAC_OVERRIDE) | (std::uint64_t{1} << CAP_DAC_READ_SEARCH);
    for (int capability = 0; capability <= last_capability(); ++capability) {
        if ((kReading >> capability & 1U) == 0 &&
            ::prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 && errno != EINVAL) {
            return errno_error("dropping capability " + std::to_string(capability) +
                               " from the bounding set");
        }
    }
    auto held = capabilities();
    if (!held) {
        return held.error();
    }
    __user_cap_header_struct header{.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    for (std::size_t i = 0; i < held->size(); ++i) {
        const auto reading = static_cast<std::uint32_t>(kReading >> (32 * i));
        data[i].permitted = held.value()[i].permitted & reading;
        data[i].effective = data[i].permitted;
    }
    if (::syscall(SYS_capset, &header, data) != 0) {
        return errno_error("capset");
    }
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
        return errno_error("clearing ambient capabilities");
    }
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        return errno_error("PR_SET_NO_NEW_PRIVS");
    }
    return {};
}

Result<void> drop_after_start_up(const std::optional<RunUser>& user, KeptCapabilities kept) {
    if (!user) {
        log::notice("privileges_kept", {{"reason", "not started as root"}});
        return {};
    }
    if (auto dropped = drop_privileges(*user, kept); !dropped) {
        return dropped.error().with_context("privilege drop to " + user->name);
    }
    log::info("privileges_dropped",
              {{"user", user->name},
               {"uid", std::to_string(user->uid)},
               {"gid", std::to_string(user->gid)},
               {"kept", kept == KeptCapabilities::net_raw ? "CAP_NET_RAW" : "none"}});
    return {};
}

}  // namespace splicer::security
