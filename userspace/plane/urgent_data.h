#pragma once
// TCP urgent data (a peer's send(..., MSG_OOB)) on the userspace planes, splice and copy.
// The policy, the same on every plane (README "Data planes"): the urgent byte is not
// delivered, every other byte is, in order, as a reader connected directly with default
// socket options sees it. (The sockmap plane's verdict drops an skb holding only the urgent
// byte and passes any other holding one to the daemon, which leaves the byte out.)
//
// Kernel behaviour this relies on (net/ipv4/tcp.c, Linux 6.18):
// - recv() without SO_OOBINLINE skips the urgent byte (tcp_recvmsg_locked: at urg_seq it
//   steps over one byte) and returns what follows; a recv() that has copied bytes stops just
//   before it. Once past it, the kernel clears the mark (urg_data = 0).
// - splice() from a socket (tcp_read_sock) stops at the urgent byte whatever SO_OOBINLINE
//   says and, there, moves nothing and reports EAGAIN, while poll() keeps reporting POLLIN
//   for the bytes behind it: a relay that only splices spins there and never gets further.
//   The way past is one recv(), which skips the byte.
// - recv() skipping the byte says nothing. So the planes count a direction's urgent bytes
//   when it ends in order: TCP consumed (tcpi_bytes_received - FIN - unread) minus what the
//   plane received is exactly what recv() skipped.

#include <cstdint>

#include "plane/flow.h"

namespace splicer::plane {

// SIOCATMARK: is the next byte to read the urgent byte (splice stops here)?
bool at_urgent_mark(int fd);

// At start: how much every source had consumed before the plane took over (bytes an HTTP
// exchange read before a 101, say), kept in the connection's directions.
void note_consumed_at_start(Flow& connection);

// At a direction's EOF, once every byte received from its source was delivered
// (Direction::bytes): the urgent bytes recv() skipped in that direction. 0 if unknown.
std::uint64_t urgent_bytes_skipped(const Flow& connection, std::size_t direction);

}  // namespace splicer::plane
