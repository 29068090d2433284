#pragma once
// One TLS connection over memory: the io_uring handler moves the bytes, this class only turns
// ciphertext into plaintext and back. It never touches a socket, never blocks, and reports
// every outcome as a value (Status), never by exception. The same class serves both ends a
// terminating splicer has: the client's connection (server side, create()) and, for an
// https:// backend, the connection to it (client side, create_client()).
//
// The transport is a tls::CipherChannel (tls/cipher_channel.h): a bounded queue each way,
// so a peer that sends faster than the proxy reads, or a proxy that writes faster than the
// socket drains, meets a full queue (a short ingest, Status::want_output) instead of growing
// memory; and an idle connection's empty queues hold no buffer.
//
//   socket --recv--> ingest() ..SSL.. read_plain()  --> HTTP proxy
//   socket <--send-- pending_cipher()/consume_cipher() ..SSL.. write_plain() <-- HTTP proxy
//
// The probe on port 443 only peeks at the ClientHello (MSG_PEEK, probe/), so every byte of
// the hello is still in the socket when a terminating rule matches: the handler recv()s and
// ingest()s from the first byte like any other, and nothing has to be replayed.

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "memory/rare_string.h"
#include "splicer/result.h"
#include "tls/cipher_channel.h"
#include "tls/openssl_handles.h"

namespace splicer::tls {

class ServerContext;
class UpstreamContext;

enum class Status {
    ok,           // done (or some bytes moved: see Io::bytes)
    want_input,   // needs more ciphertext: ingest() what the socket has (send pending first)
    want_output,  // the outgoing buffer is full: send pending_cipher() and consume it first
    closed,       // read_plain(): the peer's close_notify arrived; no more plaintext comes
    failed,       // a fatal TLS error (error() says which); send what is pending, then close
};
std::string_view to_string(Status status);

class Session {
public:
    // Each direction's ciphertext queue, allocated only while bytes wait in it; a TLS record
    // is at most 16 KiB plus 256 bytes of overhead, but records pass through in parts, so
    // the capacity only bounds memory.
    static constexpr std::size_t kDefaultBufferBytes = 16384;

    // The server side of a client's connection.
    static Result<Session> create(const ServerContext& context,
                                  std::size_t buffer_bytes = kDefaultBufferBytes);
    // The client side of a connection to an https:// backend reached for `host` (the
    // request's Host without port): SNI and the name the certificate must carry, as
    // UpstreamContext::new_connection sets them. The first handshake() call produces the
    // ClientHello. A refused certificate fails the handshake with error() "certificate: "
    // and the verifier's reason ("certificate: unable to get local issuer certificate").
    static Result<Session> create_client(const UpstreamContext& context, std::string_view host,
                                         std::size_t buffer_bytes = kDefaultBufferBytes);

    // A move points the SSL's BIO at the channel's new place.
    Session(Session&& other) noexcept;
    Session& operator=(Session&& other) noexcept;
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    ~Session() = default;

    // Ciphertext received from the socket; returns how many bytes were taken, fewer than
    // offered when the incoming buffer is full (read_plain() or handshake() make room).
    std::size_t ingest(std::span<const std::byte> cipher);
    // ingest() without a copy: room in the incoming queue for a recv to fill, then
    // ingested() with what it received (0 included). Nothing else may touch the session
    // between the two (the recv writes into its buffer).
    std::span<std::byte> ingest_room();
    void ingested(std::size_t bytes);
    // Ciphertext received and not yet read by the SSL.
    [[nodiscard]] std::size_t pending_input_bytes() const;
    // The socket's read side reached EOF: what is buffered is still read, then a read without
    // the peer's close_notify fails ("unexpected eof while reading": a truncation). OpenSSL 3
    // then fails every later write too, so the daemon never calls this: a peer's bare FIN
    // (shutdown(SHUT_WR)) ends its input, and the answer still goes out (TlsTransport,
    // TlsRelay keep the EOF themselves). For a caller whose EOF ends the session anyway.
    void ingest_end();

    // Drives the handshake: ok once it is done.
    Status handshake();
    [[nodiscard]] bool handshake_done() const;

    struct Io {
        std::size_t bytes = 0;
        Status status = Status::ok;
    };
    // Plaintext from the peer into `out` (drives the handshake first if needed).
    Io read_plain(std::span<std::byte> out);
    // Plaintext to the peer; may take only part of `in` (then want_output: send, retry).
    Io write_plain(std::span<const std::byte> in);

    // Ciphertext to send, all of it, contiguous. Valid until consume_cipher() or the next
    // write.
    std::span<const std::byte> pending_cipher();
    void consume_cipher(std::size_t bytes);
    [[nodiscard]] std::size_t pending_cipher_bytes() const;
    // Whether a ciphertext buffer is held now: only while bytes wait either way (idle: no).
    [[nodiscard]] bool holds_cipher_buffers() const;

    // Queues our close_notify (once; later calls are no-ops returning ok): after it, no more
    // plaintext can be written, but the peer's can still be read (a half-close).
    Status close_notify();
    // The peer's close_notify has been read.
    [[nodiscard]] bool peer_closed() const;

    // After the handshake: the SNI host name the client sent (on the client side: the one we
    // sent; "" if none), the ALPN protocol chosen ("" if none), "TLSv1.3" and the like, and
    // whether a ticket resumed the session.
    [[nodiscard]] std::string_view server_name() const;
    [[nodiscard]] std::string_view alpn() const;
    [[nodiscard]] std::string_view version() const;
    [[nodiscard]] bool resumed() const;
    // Why the last call failed (OpenSSL's reason text), "" when nothing failed.
    [[nodiscard]] const std::string& error() const { return error_.str(); }

private:
    Session(std::size_t buffer_bytes, SslPtr ssl) : channel_(buffer_bytes), ssl_(std::move(ssl)) {}
    // `ssl` attached to a new channel of `buffer_bytes` each way: the part both sides share.
    static Result<Session> over_memory(SslPtr ssl, std::size_t buffer_bytes);
    // The SSL's BIO pointed at this session's channel (after a move).
    void rebind();

    // SSL_get_error's verdict on `result` as a Status, recording the reason when it failed.
    Status status_of(int result);
    // A verifying client's handshake stopped at the peer's certificate.
    [[nodiscard]] bool certificate_refused() const;

    // In the session, not on the heap of its own (a malloc chunk per terminated connection,
    // idle ones too): a move points the BIO at it again (rebind). Declared first, so the SSL
    // (and its BIO) goes before it. outgoing.ended(): our close_notify is queued.
    CipherChannel channel_;
    SslPtr ssl_;
    // Empty unless a call failed; out of line (memory/rare_string.h): every terminated
    // connection keeps its session while idle.
    memory::RareString error_;
};
// Every terminated connection keeps its session while idle (in its TlsTransport): 32 bytes
// and a 56-byte channel on the heap until session 31, 64 with the channel in it and the
// close_notify flag in the outgoing queue's padding. On LP64.
static_assert(sizeof(void*) != 8 || sizeof(Session) <= 64,
              "the TLS session grew: every idle terminated connection keeps one");

}  // namespace splicer::tls
