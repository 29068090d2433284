#pragma once
// A Transport (daemon/transport.h) through TLS: a tls::Session between the socket and the
// exchange. One logical read or send becomes as many io_uring operations as TLS needs, one
// at a time: recv ciphertext -> ingest -> read_plain; write_plain -> send the pending
// ciphertext; the handshake's flights on the way (the first read drives a server's, the first
// send a client's). The logical operation reports once, when it is done.
//
// Memory: the session's two ciphertext queues (16 KiB each, tls/cipher_channel.h), each
// held only while bytes wait in it, and OpenSSL's own record buffers (released when empty,
// SSL_MODE_RELEASE_BUFFERS). Ciphertext is received straight into the session's incoming
// queue and sent straight out of its outgoing one; a read that waits for the peer with
// nothing buffered polls first, so an idle connection holds no receive buffer, and meanwhile
// gives the plaintext room its caller lent back (TransportUser::give_back_read_room: the
// exchange's pool lends it to a busy connection), asking for room again when records come.
// A plaintext send is cut to one record's worth per round, so nothing grows with the body.
//
// The session's context (tls::ServerContext, whose callbacks the SSL points at) is kept
// alive by `context_owner` for the transport's life: a SIGHUP swaps the certificate store for
// new connections, this one keeps what it started with.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "daemon/tls_relay.h"
#include "daemon/transport.h"
#include "memory/rare_string.h"
#include "tls/session.h"

namespace splicer::daemon {

class TlsTransport final : public Transport {
public:
    // At most this much plaintext per write_plain: one TLS record.
    static constexpr std::size_t kMaxRecordPlaintext = 16 * 1024;

    TlsTransport(const UniqueFd& socket, http::Side side, TransportRing& ring, TransportUser& user,
                 std::shared_ptr<const void> context_owner, tls::Session session);

    void read(std::span<char> room, std::chrono::steady_clock::duration timeout) override;
    void send(std::span<const char> bytes, std::chrono::steady_clock::duration timeout) override;
    void close_write(std::chrono::steady_clock::duration timeout) override;
    void on_completion(HttpOp op, int result) override;

    [[nodiscard]] std::string_view error() const override { return error_; }
    [[nodiscard]] bool established() const override { return session_.handshake_done(); }
    [[nodiscard]] bool closes_gracefully() const override { return true; }
    [[nodiscard]] bool spliceable() const override { return false; }

    // For a TLS relay after a 101 (the session's state and what it buffered).
    tls::Session& session() { return session_; }
    // After a 101, with no operation in flight: the session, its context's owner and the
    // ciphertext received but not yet ingested, for daemon::TlsRelay. The transport is
    // spent afterwards (only its destructor may run).
    TlsRelayStart release_for_relay();

private:
    enum class Mode : std::uint8_t { idle, reading, sending, closing };

    void begin(Mode mode, std::chrono::steady_clock::duration timeout);
    // Drives the session until an io_uring operation is submitted or the logical operation
    // is done. Each round either submits, finishes, or makes progress the session counts.
    void step();
    [[nodiscard]] bool step_read();
    [[nodiscard]] bool step_send();
    [[nodiscard]] bool step_close();
    // Waits for the peer's bytes: a poll first when the session holds none (an idle
    // connection then holds no receive buffer, and no read room: it is given back), then
    // receive_now().
    void receive();
    // A recv into the session's incoming queue.
    void receive_now();
    // Sends the session's pending ciphertext; false when there is none.
    bool flush();
    // flush()'s send again after its first try found no room: waiting, under the timeout.
    void send_waiting();
    // The logical operation is done with `result`: reported from the current completion, or
    // (called from read/send/close_write) from a NOP's, so the user is never re-entered.
    void finish(int result);
    void fail(int result);
    [[nodiscard]] std::chrono::steady_clock::duration remaining() const;

    // One byte each first: they fill the padding behind Transport's members.
    Mode mode_ = Mode::idle;
    bool polling_ = false;  // the http_recv in flight is receive()'s poll, not a recv
    // The http_send in flight is flush()'s first try, without waiting (as PlainTransport's,
    // daemon/transport.h): -EAGAIN sends the same bytes again, waiting, under the timeout.
    bool send_without_waiting_ = false;
    bool room_given_back_ = false;  // room_ went back to the user while the peer was silent
    bool eof_ = false;              // the peer's FIN was read
    bool failing_ = false;          // a fatal TLS error: its alert is flushed, then -EPROTO
    bool close_queued_ = false;
    bool in_completion_ = false;
    std::shared_ptr<const void> context_owner_;  // declared before the session: destroyed after it
    tls::Session session_;
    std::chrono::steady_clock::time_point deadline_{};
    std::span<char> room_;
    std::span<const char> out_;
    std::size_t taken_ = 0;          // plaintext of out_ the session took (sent once flushed)
    std::optional<int> done_;        // to report at the end of the current completion
    std::optional<int> nop_result_;  // to report when the NOP completes
    memory::RareString error_;       // empty unless the transport failed (memory/rare_string.h)
};

}  // namespace splicer::daemon
