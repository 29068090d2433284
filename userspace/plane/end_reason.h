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

}  // namespace splicer::plane
