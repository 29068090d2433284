#pragma once
// The old process's side of `splicer upgrade` / SIGUSR2 (README "Upgrading without dropping
// connections"): starts the new binary through the launcher (upgrade/launcher.h) with one end
// of a fresh socketpair, offers it the listening sockets (upgrade/handover_protocol.h), and
// waits, bounded, for its ready. Blocking: runs off the event loop (daemon.cpp runs it as the
// prepare step of a ReloadRunner). The caller stops accepting only after this succeeded; on
// any error the old process has given nothing away and serves on (upgrade_failed).

#include <sys/types.h>

#include <chrono>
#include <span>
#include <string>

#include "splicer/result.h"
#include "upgrade/handover_protocol.h"
#include "upgrade/launcher.h"

namespace splicer::upgrade {

// A listening socket to offer: the loop's fd (not given away: the receiver gets its own
// reference) and what the new process cannot ask the socket.
struct ListenerToHand {
    int fd = -1;
    OfferedListener what;
};

// How long a new process may take from its start to ready: a daemon start loads the BPF
// program and runs the sockmap self-test (about a second here), resolves every backend
// name, and reads its certificates.
inline constexpr std::chrono::seconds kReadyTimeout{30};

// The new process's pid once it said ready; an error that says why not ("the new process
// exited before ready" when the binary is missing or failed, "timed out waiting ..." past
// `ready_timeout`, or a malformed answer).
Result<pid_t> hand_over(Launcher& launcher, std::span<const ListenerToHand> listeners,
                        std::chrono::seconds ready_timeout = kReadyTimeout);

}  // namespace splicer::upgrade
