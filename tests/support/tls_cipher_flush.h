#pragma once
// Sends what a tls::Session has queued for the wire (handshake records, records of written
// plaintext, alerts, close_notify) on a socket without blocking: the step every poll()-driven
// test peer of a real Session takes after driving it (support/tls_session_client.h,
// support/tls_session_server.h), as the daemon's transports do with io_uring sends.

#include "support/sockets.h"
#include "tls/session.h"

namespace splicer::test {

// Sends pending_cipher() until it is empty or the socket would block, consuming what went
// out. Returns 0 then (check pending_cipher_bytes() to tell the two apart), or the errno of
// a send that failed for good (EPIPE, ECONNRESET): what was not sent stays queued.
int flush_pending_cipher(tls::Session& session, const UniqueFd& socket);

}  // namespace splicer::test
