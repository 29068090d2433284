#pragma once
// Which worker of the new process accepts from which handed-over listening socket (`splicer
// upgrade` with `workers`, README "Upgrading"). The old process had one SO_REUSEPORT group
// of N sockets per address (net/listen_group.h), or systemd's one socket shared by every
// worker; the new one may run M workers. Every received socket must be accepted from: one
// closed drops the connections queued on it, and one left unaccepted would still take its
// share of new ones. So:
//   - systemd's socket (one per address) goes to every worker, as at a normal start;
//   - group members go round-robin: with M < N a worker accepts from several;
//   - with M > N the missing members are made by joining the group (an SO_REUSEPORT bind of
//     the same address, allowed while the received ones are open, root's like them). A
//     received socket bound without SO_REUSEPORT (the old process ran one worker) gets it
//     first, as a fresh start with M workers would have made it.

#include <cstdint>
#include <vector>

#include "net/address.h"
#include "splicer/result.h"
#include "splicer/unique_fd.h"
#include "upgrade/adoption.h"

namespace splicer::upgrade {

// `handed`: every socket received for `address` (Adoption::claim). Returns `workers` (>= 1)
// lists, one per worker, each with at least one socket; every handed socket appears in
// exactly one list (systemd's: in every list, duplicated).
Result<std::vector<std::vector<AdoptedListener>>> share_listeners(
    std::vector<AdoptedListener> handed, const net::SocketAddress& address, std::uint32_t workers,
    int backlog);

}  // namespace splicer::upgrade
