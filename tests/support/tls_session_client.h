#pragma once
// Drives the client side of a real tls::Session (Session::create_client, an https:// backend
// connection) over a real loopback TCP socket the way the daemon's backend transport does:
// handshake -> pending_cipher -> send, recv -> ingest, write_plain, read_plain, with poll()
// instead of io_uring. One blocking call per connection, bounded by a deadline.

#include <chrono>
#include <cstdint>
#include <string>

#include "support/sockets.h"
#include "tls/session.h"

namespace splicer::test {

struct TlsClientReport {
    bool handshake_done = false;
    std::string server_name;  // the SNI the session sent ("" none)
    std::string version;      // "TLSv1.3" and the like
    bool resumed = false;     // the backend took the session offered
    std::string received;     // plaintext up to the server's close_notify or EOF
    bool peer_close_notify = false;
    std::string error;  // Session::error() of a failure, or "timed out"
};

// Handshakes on `socket` (connected, blocking or not), writes `request` once it is done,
// then reads until the server's close_notify, EOF or `received_limit` bytes.
TlsClientReport run_tls_client(tls::Session& session, const UniqueFd& socket,
                               const std::string& request,
                               std::chrono::milliseconds timeout = std::chrono::seconds(10),
                               std::size_t received_limit = 1 << 20);

}  // namespace splicer::test
