#pragma once
// A TLS client written with libssl for the termination tests that need more than one
// `openssl s_client` run gives: a connection that stays open across a daemon reload and
// carries several HTTP/1.1 requests (keep-alive), the peer certificate's serial, a client
// that finishes the handshake and then says nothing. Blocking socket, every call bounded by
// SO_RCVTIMEO / SO_SNDTIMEO; every OpenSSL object owned (tls/openssl_handles.h).

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "splicer/unique_fd.h"
#include "support/http_wire.h"
#include "tls/openssl_handles.h"

namespace splicer::test {

struct TlsClientOptions {
    std::uint16_t port = 0;                   // on 127.0.0.1
    std::string servername;                   // SNI; empty: none
    std::vector<std::string> alpn;            // offered, in order; empty: no ALPN extension
    std::chrono::milliseconds timeout{5000};  // per blocking call
};

class TlsTestClient {
public:
    // Connects and completes the handshake (without verifying the peer: the tests look at
    // the certificate themselves). Throws std::runtime_error naming what failed.
    explicit TlsTestClient(const TlsClientOptions& options);
    TlsTestClient(const TlsTestClient&) = delete;
    TlsTestClient& operator=(const TlsTestClient&) = delete;

    // The peer leaf's serial number in upper-case hex, as `openssl x509 -serial` prints it.
    [[nodiscard]] std::string peer_serial() const;
    [[nodiscard]] std::string peer_common_name() const;
    [[nodiscard]] std::string protocol() const;  // "TLSv1.3"
    [[nodiscard]] std::string alpn() const;      // "" when none was selected

    // Writes `request`, reads one response with a Content-Length body (or none). An
    // incomplete response (EOF, error, timeout) comes back with complete == false.
    HttpResponse exchange(const std::string& request);
    // The two halves of exchange(), for a test that does something between them (a bare
    // FIN: ::shutdown(fd(), SHUT_WR) with no close_notify). write() is false when the
    // connection failed before all of `request` was written.
    bool write(const std::string& request);
    HttpResponse read_response();

    // Waits up to `timeout` for the server to end the connection without sending data:
    // "close_notify", "eof" (TCP FIN without close_notify), "reset", "data" (it sent
    // application bytes) or "open" (still open at the timeout).
    std::string wait_for_close(std::chrono::milliseconds timeout);

    [[nodiscard]] int fd() const { return socket_.get(); }

private:
    bool read_more();

    UniqueFd socket_;
    tls::SslCtxPtr context_;
    tls::SslPtr ssl_;
    std::string buffered_;
};

// The serial of the first certificate in a PEM file, in the form peer_serial() gives ("" when
// it cannot be read).
std::string certificate_serial(const std::filesystem::path& pem_file);

}  // namespace splicer::test
