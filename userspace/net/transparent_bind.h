#pragma once
// Transparent mode (README "Transparent mode"): a backend socket that leaves from the
// client's own address and port, so the backend's getpeername() is the client.

#include "net/address.h"
#include "splicer/result.h"

namespace splicer::net {

// Marks `fd` (a fresh, unconnected TCP socket of the client's family) IP_TRANSPARENT or
// IPV6_TRANSPARENT and binds it to `client`. Setting the option needs CAP_NET_RAW or
// CAP_NET_ADMIN at the time of the call, which is why the privilege drop keeps CAP_NET_RAW
// when a rule is transparent. SO_REUSEADDR as sslh sets it: one client address:port may
// reach two different backends; to the same backend the connect fails (EADDRNOTAVAIL, the
// 4-tuple is taken). The error says which step failed and why, for the backend_failed line.
Result<void> bind_to_client(int fd, const SocketAddress& client);

// Text for a failed transparent connect (a negative errno from io_uring, -ECANCELED for the
// connect timeout): the usual reason plus the likely cause in transparent mode.
std::string transparent_connect_error(int result);

}  // namespace splicer::net
