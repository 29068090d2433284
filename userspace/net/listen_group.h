#pragma once
// One listening socket per worker on one address (`workers`, daemon/daemon.cpp). With more
// than one they form an SO_REUSEPORT group: the kernel hashes each new connection's
// addresses to one socket of the group, so every worker's ring accepts from a queue of its
// own and no two rings wake for the same connection.
//
// SO_REUSEPORT also lets any later socket of the same user join the group: a second splicer
// started on the same port would silently take a share of the clients instead of failing
// to bind. So the address is first bound by a plain socket, as a one-worker daemon binds
// it; that fails (EADDRINUSE) while anything listens there, and the group is only made
// once it succeeded.

#include <cstdint>
#include <vector>

#include "net/address.h"
#include "splicer/result.h"
#include "splicer/unique_fd.h"

namespace splicer::net {

// `count` (>= 1) listeners on `address`, each as net::listen_on makes them; one alone is a
// plain listener. Port 0 gets a kernel-chosen port, the same for the whole group.
Result<std::vector<UniqueFd>> listen_group(const SocketAddress& address, int backlog,
                                           std::uint32_t count);

}  // namespace splicer::net
