#pragma once
// Two tls::Sessions talking through memory instead of sockets: what one queues for the wire
// is handed straight to the other's ingest. Unit tests of the session and its cipher queues
// (tests/unit/test_tls_cipher_channel.cpp, test_tls_idle_session_memory.cpp) drive a whole
// handshake and data both ways this way, with no socket, poll() or timing in between.

#include "tls/session.h"

namespace splicer::test {

// Moves `from`'s pending ciphertext into `to` until none is left or `to` takes no more
// (bounded: 64 hand-overs).
void pass_pending_cipher(tls::Session& from, tls::Session& to);

// Steps both handshakes, handing each side's flight to the other, until both are done or 20
// rounds pass; true when both are done.
bool handshake_in_memory(tls::Session& client, tls::Session& server);

}  // namespace splicer::test
