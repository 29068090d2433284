#pragma once
// What one loop's export hands over and what an adopt reports (daemon/event_loop.h,
// export_connections / adopt_connections; userspace/handoff/README.md).

#include <cstddef>
#include <string>
#include <vector>

#include "handoff/record.h"
#include "splicer/unique_fd.h"

namespace splicer::handoff {

// The records and the fds they name by index: what goes over the unix socket (the records
// as handoff::encode bytes, the fds as one SCM_RIGHTS array in this order).
struct Batch {
    std::vector<ConnectionRecord> records;
    std::vector<UniqueFd> fds;
};

struct ExportOutcome {
    Batch batch;
    // Connections the old loop keeps and drains: probing, connecting, in an HTTP exchange,
    // TLS-terminated or relayed, closing, or served by a plane that does not export.
    std::size_t left = 0;
    // Connections that failed while being quiesced (a peer reset): ended there with a RST.
    std::size_t failed = 0;
    // After a handover, some accept of the loop had not ended yet (its cancel was still on
    // the way): once the last one ends the loop takes the clients left waiting in its
    // queues (EventLoop::accept_left_after_handover), which a later round can move.
    bool accepts_pending = false;
};

struct AdoptOutcome {
    std::size_t adopted = 0;
    // Records refused (another plane kind, no free slot, a limit): their sockets were reset.
    std::size_t refused = 0;
    std::string first_refusal;  // why the first one was refused, for the log and the caller
};

}  // namespace splicer::handoff
