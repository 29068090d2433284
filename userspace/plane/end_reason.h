#pragma once
// The `end=` reason a plane gives when a call on one of a pair's sockets fails: which peer
// reset, or which call failed and with which errno. One spelling for every plane (README,
// "Logs", lists them).

#include <cstddef>
#include <string>

namespace splicer::plane {

// "client_reset" for the client's socket (kClientToBackend, the socket bytes
// arrive on in that direction), "backend_reset" for the backend's.
std::string peer_reset(std::size_t socket);

// Why the pair ends when `call` ("recv", "send", "splice") on `socket` failed with `error`
// (a positive errno). ECONNRESET is the peer's RST; EPIPE on a write is the same RST met by
// a write after it (the socket was shut by the RST, never by the daemon while it still had
// bytes to write): both name the peer. Anything else names the call and the errno:
// "send_error:ETIMEDOUT" (the number where the C library has no name for it).
std::string failed_call(const char* call, int error, std::size_t socket);

// Whether a read of 0 from `fd` met a reset rather than the peer's FIN. A socket reports its
// pending error once: when another call on it took the RST's ECONNRESET first (a send to
// that peer in io_uring, completed in the same batch as the wake-up that led to this read),
// the read finds only the shut receive side and returns 0, as after a FIN. The state tells
// them apart: a FIN leaves the socket in CLOSE_WAIT, a reset (or a retransmission timeout)
// in CLOSE. Only while the daemon has not shut the socket's write side (`write_shut`): after
// its own FIN, the peer's FIN ends the socket in CLOSE too (tcp_time_wait), and no send can
// then have taken an error.
bool ended_by_reset(int fd, bool write_shut);

}  // namespace splicer::plane
