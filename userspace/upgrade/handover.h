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
#include "splicer/unique_fd.h"
#include "upgrade/handover_protocol.h"
#include "upgrade/launcher.h"

namespace splicer::upgrade {

// A listening socket to offer: the loop's fd (not given away: the receiver gets its own
// reference) and what the new process cannot ask the socket.
struct ListenerToHand {
    int fd = -1;
    OfferedListener what;
};

// How long the old process waits for the answer to a batch of established connections
// (upgrade/batch_transfer.h). The new process answers right after checking a batch and
// refuses one it could not answer within kAnswerWithin (daemon/connection_handover.h): a
// "taken" that arrives after the old process gave up, and adopted its copies back, would
// leave two processes serving one socket.
inline constexpr std::chrono::seconds kAnswerTimeout{10};
inline constexpr std::chrono::seconds kAnswerWithin{2};

// How long a new process may take from its start to ready: a daemon start loads the BPF
// program and runs the sockmap self-test (about a second here), resolves every backend
// name, and reads its certificates.
inline constexpr std::chrono::seconds kReadyTimeout{30};

// What a handover that succeeded leaves: the new process's pid and the socket, kept for the
// established connections' batches (upgrade/batch_transfer.h), its receive timeout set to
// kAnswerTimeout.
struct HandedOver {
    pid_t pid = 0;
    UniqueFd socket;
};

// The new process once it said ready; an error that says why not ("the new process exited
// before ready" when the binary is missing or failed, "timed out waiting ..." past
// `ready_timeout`, or a malformed answer).
Result<HandedOver> hand_over(Launcher& launcher, std::span<const ListenerToHand> listeners,
                        std::chrono::seconds ready_timeout = kReadyTimeout);

}  // namespace splicer::upgrade
