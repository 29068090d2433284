#pragma once
// A terminated TLS connection after an HTTP 101 (a WebSocket, issue 14 point 2): the client
// side speaks TLS, so the kernel cannot splice the pair; its bytes are relayed through
// OpenSSL (tls::Session) in userspace, both directions at once:
//
//   client --recv cipher--> ingest .. read_plain --send plain--> backend   (up)
//   client <--send cipher-- pending_cipher .. write_plain <--recv plain-- backend   (down)
//
// - Full duplex: each direction has its own recv and send in flight; one waiting (a reader
//   that stopped, a quiet side) never stops the other.
// - Back-pressure: a side is read only when what was read from it before has been taken by
//   the other side (a recv only into an empty buffer), so memory stays at the fixed buffers
//   below whatever the peers do: a client that stops reading fills the session's outgoing
//   buffer, write_plain() says want_output, the backend is no longer read, and TCP pushes
//   back on the backend.
// - One cipher send in flight: TLS 1.3 post-handshake messages (tickets, key updates) and
//   data share the session's outgoing buffer, and their order on the wire is that buffer's.
// - Half-close: the client's close_notify (or its FIN without one, as nginx treats it) ->
//   shutdown(backend, SHUT_WR); the backend's EOF -> close_notify to the client, then
//   shutdown(client, SHUT_WR) once it is sent. Both done: the connection ends ("done").
// - Idle bound: no byte moved either way for `idle_timeout` ends it ("idle_timeout"); one
//   timer per connection, re-armed only when it fires early.
//
// The relay reaches the event loop only through TlsRelayContext, like the HTTP exchange
// through HttpContext.

#include <liburing.h>
#include <linux/time_types.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "daemon/connection.h"
#include "daemon/connection_handler.h"
#include "tls/session.h"
#include "uring/tag.h"

namespace splicer::daemon {

// The relay's io_uring operations (uring::Owner::handler). `arg` is the side: 0 the client
// (ciphertext), 1 the backend (plaintext).
enum class TlsRelayOp : std::uint8_t {
    relay_recv,  // recv from side `arg`
    relay_send,  // send to side `arg`
    relay_idle,  // the idle timer (arg 0, so HandlerContext::remove_handler_timeout finds it)
};
static_assert(uring::fits_in_handler_tag(TlsRelayOp::relay_idle));

// What a relay asks of the event loop that runs it.
class TlsRelayContext {
public:
    // An SQE whose completion comes back to the relay of `connection`, tagged (op, arg).
    virtual io_uring_sqe* sqe_for(Connection& connection, TlsRelayOp op, std::uint8_t arg) = 0;
    // Ends the connection (both sockets), logging `reason` as how it ended.
    virtual void close_connection(Connection& connection, std::string_view reason) = 0;
    // `bytes` of payload delivered in `direction` (kClientToBackend, kBackendToClient), for
    // the daemon's live byte counters.
    virtual void count_relayed(std::size_t direction, std::uint64_t bytes) = 0;

protected:
    ~TlsRelayContext() = default;
};

// What the HTTP exchange hands over after the 101 went to the client.
struct TlsRelayStart {
    tls::Session session;  // handshake done; may still hold ciphertext to send, plaintext to read
    // Whatever keeps the session's tls::ServerContext alive (the certificate store it came
    // from): its callbacks (ticket keys) run for as long as the session does, so a reload must
    // not free it under a live relay. May be empty when the caller keeps it alive otherwise.
    std::shared_ptr<const void> context_owner;
    std::vector<std::byte> client_cipher;  // read from the client, not yet ingested
    std::vector<std::byte> client_plain;   // decrypted, past the request head: for the backend
    std::vector<std::byte> backend_plain;  // past the 101 response head: for the client
    std::chrono::steady_clock::duration idle_timeout = std::chrono::seconds(60);
};

// A buffer of bytes on their way from one side to the other: [start, end) still to go.
// Allocated when first needed and released once empty, so a quiet relay holds only the
// buffers its pending recvs write into.
class RelayBuffer {
public:
    static constexpr std::size_t kBytes = 16 * 1024;

    // Room to fill, at the front: only called when nothing is pending (no compaction, so a
    // recv in flight always writes where it was told).
    std::span<std::byte> room();
    // Takes `bytes` (any size: what the exchange had read may be larger than kBytes).
    void assign(std::span<const std::byte> bytes);
    void filled(std::size_t bytes) { end_ += bytes; }
    void consumed(std::size_t bytes);
    void release() {
        data_.reset();
        capacity_ = start_ = end_ = 0;
    }

    [[nodiscard]] std::span<const std::byte> pending() const {
        return {data_.get() + start_, end_ - start_};
    }
    [[nodiscard]] bool empty() const { return start_ == end_; }
    [[nodiscard]] std::size_t capacity() const { return capacity_; }

private:
    std::unique_ptr<std::byte[]> data_;
    std::size_t capacity_ = 0;
    std::size_t start_ = 0;
    std::size_t end_ = 0;
};

class TlsRelay final : public ConnectionHandler {
public:
    enum class Side : std::uint8_t { client = 0, backend = 1 };

    // `connection` owns this relay and outlives it; `context` outlives both.
    TlsRelay(Connection& connection, TlsRelayContext& context, TlsRelayStart start);

    void start() override;
    void on_completion(std::uint8_t op, std::uint8_t arg, int result, std::uint32_t flags) override;
    void on_closing(HandlerContext& context) override;
    // Plaintext each way: sent to the backend, taken by the session for the client.
    [[nodiscard]] std::uint64_t bytes(std::size_t direction) const override {
        return bytes_.at(direction);
    }

    // Bytes held in userspace for this connection (its buffers' capacity and the session's
    // ciphertext waiting to go out): what "bounded memory" is measured on.
    [[nodiscard]] std::size_t buffered_bytes() const;

private:
    // Everything that can move now, in both directions; then the recvs that are due.
    void pump();
    bool pump_up();
    bool pump_down();
    bool flush_cipher();
    void arm_recvs();
    // The client's close_notify or EOF: no more bytes for the backend.
    void finish_up();
    void finish_if_done();

    void recv_from(Side side);
    void send_to(Side side, std::span<const std::byte> bytes);
    void arm_idle_timer(std::chrono::steady_clock::duration after);

    void on_recv(Side side, int result);
    void on_sent(Side side, int result);
    void on_idle_timer(int result);
    // A call on `side`'s socket failed with `result` (a negative errno).
    void fail(const char* call, Side side, int result);
    void end(std::string_view reason);
    // The relay ended, or the daemon is closing the connection: completions only release.
    [[nodiscard]] bool closing() const { return ended_ || connection_.state == State::closing; }

    [[nodiscard]] int fd_of(Side side) const {
        return side == Side::client ? connection_.client.get() : connection_.backend.get();
    }

    Connection& connection_;
    TlsRelayContext& context_;
    std::shared_ptr<const void> context_owner_;  // declared first: destroyed after the session
    tls::Session session_;
    std::chrono::steady_clock::duration idle_timeout_;

    RelayBuffer from_client_;   // ciphertext received, not yet ingested
    RelayBuffer to_backend_;    // plaintext read from the session, being sent to the backend
    RelayBuffer from_backend_;  // plaintext received, not yet taken by the session
    RelayBuffer to_client_;     // ciphertext taken from the session, being sent to the client

    std::array<bool, 2> receiving_{};   // a recv in flight, per side
    std::array<bool, 2> sending_{};     // a send in flight, per side
    std::array<bool, 2> eof_{};         // the side's recv returned 0
    bool up_done_ = false;              // shutdown(backend, SHUT_WR) done
    bool close_notify_queued_ = false;  // our close_notify is in the session's outgoing buffer
    bool down_done_ = false;            // close_notify sent and shutdown(client, SHUT_WR) done
    bool ended_ = false;                // close_connection was asked for

    std::array<std::uint64_t, 2> bytes_{};
    std::chrono::steady_clock::time_point last_progress_{};
    bool idle_armed_ = false;
    __kernel_timespec idle_timespec_{};  // read by the kernel when the timeout is submitted
};

}  // namespace splicer::daemon
