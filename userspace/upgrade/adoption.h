#pragma once
// The new process's side of `splicer upgrade` (README "Upgrading without dropping
// connections"): started by the old daemon's launcher (upgrade/launcher.h) with
// SPLICER_UPGRADE_FD naming its end of the handover socket, it takes the offered listening
// sockets, claims each for the listen entry with the same address (as systemd's sockets are
// claimed, service/activation.h), and once it serves, says ready; the old process stops
// accepting only then. The old process's bytes are untrusted: the variable must name an open
// unix SOCK_SEQPACKET socket, the offer must parse (upgrade/handover_protocol.h), and each fd
// must be a listening TCP socket; the address comes from the kernel, not the message.

#include <sys/types.h>

#include <optional>
#include <vector>

#include "net/address.h"
#include "splicer/result.h"
#include "splicer/unique_fd.h"

namespace splicer::upgrade {

struct AdoptedListener {
    UniqueFd fd;
    bool from_systemd = false;  // systemd's socket, handed on: never shut down at a stop
};

// After ready, the old process quiesces and sends each worker's connections within a ring
// round trip, and exports again what was mid copy round every 100 ms for a few seconds: a
// wait this long for the next batch has lost its peer.
inline constexpr long kBatchWaitSeconds = 30;

class Adoption {
public:
    // Reads SPLICER_UPGRADE_FD and removes it from the environment. Unset: an empty adoption
    // (a normal start). Set: the offer read from it (bounded wait), or an error (the start
    // fails, and the old process, seeing the socket close, keeps serving).
    static Result<Adoption> take();

    [[nodiscard]] bool active() const { return socket_.valid(); }
    // Every offered listener bound to exactly `address` and served as `http` says (with
    // `workers`, one per old worker: upgrade/listener_shares.h shares them out); empty when
    // the old process offered no such socket. Each socket is handed out once: a second
    // claim of the same address gets nothing.
    std::vector<AdoptedListener> claim(const net::SocketAddress& address, bool http);
    // The metrics endpoint's listener bound to `address`, if offered.
    std::optional<UniqueFd> claim_metrics(const net::SocketAddress& address);
    // An error naming every offered listener no listen entry claimed: the config changed
    // between the two starts in a way a restart, not an upgrade, must apply.
    [[nodiscard]] Result<void> check_all_claimed() const;
    // Tells the old process this one serves (its pid, for MAINPID and the logs). An error
    // (the old process gave up waiting) must end this start.
    Result<void> send_ready();
    // The handover socket, after send_ready: the old process's established connections
    // come over it (daemon/connection_handover.h). Its receive timeout is kBatchWaitSeconds.
    UniqueFd take_socket();

private:
    struct Offered {
        UniqueFd fd;
        net::SocketAddress address;
        bool http = false;
        bool from_systemd = false;
        bool metrics = false;
    };
    UniqueFd socket_;
    std::vector<Offered> offered_;   // not claimed yet, each socket once
    std::size_t offered_count_ = 0;  // fds the offer's records carried so far
};

}  // namespace splicer::upgrade
