#pragma once
// Send buffers for the sockmap plane's sockets. The psock backlog retries a full send buffer
// one jiffy later (DESIGN.md, kernel fact 3), and the verdict stops redirecting once the
// peer's send buffer has no room (flow control), so the buffer size sets the throughput.

namespace splicer::plane {

// At start-up, while root: makes sure net.core.wmem_max lets an unprivileged SO_SNDBUF reach
// `bytes`, raising it where it is lower (logged; never lowered). Backend sockets are made after
// the privilege drop, where SO_SNDBUFFORCE fails, and are capped by it. Returns the cap in
// effect afterwards (the old one where the write failed, e.g. without CAP_NET_ADMIN).
int raise_send_buffer_cap(int bytes);

// Gives `fd` a `bytes` send buffer: SO_SNDBUFFORCE where allowed, else SO_SNDBUF where `cap`
// (net.core.wmem_max) allows the size, else leaves it alone, because a capped SO_SNDBUF would
// lock it below what TCP autotuning reaches on its own (net.ipv4.tcp_wmem's maximum). Sockets
// that already have the size are left as they are. The sockmap plane calls it only for a sink
// whose reader keeps up (plane/drain_watch.h): a large buffer costs its size for every reader
// that stops.
void grow_send_buffer(int fd, int bytes, int cap);

}  // namespace splicer::plane
