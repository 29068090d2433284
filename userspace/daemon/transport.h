#pragma once
// The seam between an HTTP exchange (daemon/http_exchange.h) and one of its sockets: the
// exchange works on plaintext only, and each side (client, backend) reads and sends through a
// Transport. A transport turns one logical operation into io_uring operations on its socket
// and reports the logical outcome back, once, through TransportUser.
//
// Contract (every transport keeps it; the exchange relies on it):
// - At most one logical operation (read, send or close_write) is in flight per transport, and
//   the exchange starts the next only after the previous one reported. Nothing is reported
//   from inside read(), send() or close_write(): the outcome always arrives from a completion
//   (on_completion; a NOP when TLS already holds the answer), so the exchange never re-enters
//   itself and may call them anywhere.
// - read(room, timeout): some plaintext (at least 1 byte, at most room.size()) is placed at
//   the start of `room` (or of the room read_room() lent after the transport gave `room`
//   back: TransportUser::give_back_read_room), and on_read(side, n) reports n > 0; 0 is the end of the stream (an
//   EOF, a TLS close_notify, or a TLS stream cut without one: a truncation ends the exchange
//   like an EOF); < 0 is -errno, -ECANCELED when the whole operation took longer than
//   `timeout`. `room` stays untouched past what was reported.
// - send(bytes, timeout): on_sent(side, n) reports how many of `bytes` went out, n > 0, maybe
//   fewer than offered (the exchange sends the rest); n <= 0 is an error (-ECANCELED: timed
//   out). `bytes` must stay valid until reported.
// - close_write(timeout): ends our direction: TLS queues and flushes its close_notify first
//   (when the handshake finished), then shutdown(SHUT_WR). on_closed(side, 0) or -errno.
// - The timeout bounds the logical operation as a whole, handshake flights included: each
//   io_uring operation carries a linked timeout of what is left of it.
// - Operations are tagged with HttpOp::http_recv / http_send / http_close / http_timeout and
//   the side's number as arg (uring/tag.h handler space); the exchange hands completions of
//   those back to the side's transport. A transport needs no codes of its own: a recv is a
//   recv and a send a send, whatever bytes they carry.
// - The socket is the connection's (Connection::client or ::backend): a transport never owns
//   or closes it; the connection's teardown does.
//
// Transports: PlainTransport (below: today's recv/send on the fd, no copy, no extra
// operation; its close_write is an io_uring shutdown where port 80 called shutdown(2)) and TlsTransport (daemon/tls_transport.h: a tls::Session between the socket and
// the exchange). A backend reached over TLS (an https:// route) is a TlsTransport over a
// session in client (connect) state, made once the exchange's connect completed: its first
// operation (the upstream request's send) drives the handshake, then reads and sends as on the
// server side.

#include <linux/time_types.h>

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "http/exchange_table.h"
#include "splicer/unique_fd.h"

struct io_uring_sqe;

namespace splicer::daemon {

enum class HttpOp : std::uint8_t;

// Who a transport reports to: the exchange.
class TransportUser {
public:
    virtual void on_read(http::Side side, int result) = 0;
    virtual void on_sent(http::Side side, int result) = 0;
    virtual void on_closed(http::Side side, int result) = 0;

    // Room lending: a read whose transport places no byte in its room while it waits (TLS
    // receives ciphertext into the session's own queue, and polls first when that is empty)
    // offers the room back while the peer is silent, so that an idle connection holds no
    // read buffer. true: the room was taken back (it must not be touched any more), and
    // read_room() is asked for new room when bytes arrive; false: the transport keeps it.
    // The defaults keep the room (a user whose room is its own, as the tests' are).
    virtual bool give_back_read_room(http::Side /*side*/) { return false; }
    // Room for the read in progress after give_back_read_room() returned true: the same
    // contract as read()'s `room` (not empty).
    virtual std::span<char> read_room(http::Side /*side*/) { return {}; }

protected:
    ~TransportUser() = default;
};

// How a transport submits its io_uring operations: an SQE tagged (op, side) for the
// connection, counted in its outstanding operations.
class TransportRing {
public:
    virtual io_uring_sqe* transport_sqe(HttpOp op, http::Side side) = 0;

protected:
    ~TransportRing() = default;
};

class Transport {
public:
    Transport(const UniqueFd& socket, http::Side side, TransportRing& ring, TransportUser& user)
        : socket_(socket), ring_(ring), user_(user), side_(side) {}
    Transport(const Transport&) = delete;
    Transport& operator=(const Transport&) = delete;
    virtual ~Transport() = default;

    virtual void read(std::span<char> room, std::chrono::steady_clock::duration timeout) = 0;
    virtual void send(std::span<const char> bytes, std::chrono::steady_clock::duration timeout) = 0;
    virtual void close_write(std::chrono::steady_clock::duration timeout) = 0;
    // A completion of an operation this transport submitted (http_recv, http_send or
    // http_close; the linked timeouts' own completions never come here).
    virtual void on_completion(HttpOp op, int result) = 0;

    // Why the last operation failed beyond its errno ("TLS: certificate unknown"), for the
    // access log and the close reason; "" when there is nothing to add.
    [[nodiscard]] virtual std::string_view error() const { return {}; }
    // Whether plaintext can flow yet (TLS: the handshake finished). Before it, splicer has no
    // way to answer the peer (an HTTP error would have to go through the handshake it is
    // ending): the exchange closes instead.
    [[nodiscard]] virtual bool established() const { return true; }
    // Whether close_write() has more to do than a shutdown (TLS: a close_notify to flush).
    [[nodiscard]] virtual bool closes_gracefully() const { return false; }
    // Whether a 101's connection can go to a splice plane (the bytes on the socket are the
    // plaintext): plain yes, TLS no (daemon/http_response.cpp, HttpContext::upgrade_to_plane).
    [[nodiscard]] virtual bool spliceable() const { return true; }

protected:
    // Links a timeout of `timeout` (at least 1 ms: a zero timeout would fire before the
    // operation had a chance) to the operation just prepared, which must carry IOSQE_IO_LINK.
    void link_timeout(std::chrono::steady_clock::duration timeout);

    const UniqueFd& socket_;
    TransportRing& ring_;
    TransportUser& user_;
    __kernel_timespec timeout_{};  // read by the kernel when the linked timeout is submitted
    // Last: a derived transport's one-byte members fill the padding behind it (every
    // terminated connection keeps its client transport while idle).
    http::Side side_;
};

// Port 80's I/O: one recv on the socket per logical read, straight into the exchange's
// buffer; a send straight out of it.
//
// A send is first tried without waiting (MSG_DONTWAIT) and without a linked timeout: an HTTP
// head or a response body chunk nearly always fits the socket's send buffer at once, and the
// linked timeout of a send that completed inline is a second SQE and CQE for nothing (two per
// proxied request). Only when nothing could be sent (-EAGAIN: the peer stopped reading) is
// the send submitted again to wait, under the operation's timeout. A partial send is
// reported as it is; the next send (the rest, most often) then waits at once, since the
// socket's buffer was full a moment ago (a slow reader of a long body costs no extra try
// per buffer).
class PlainTransport final : public Transport {
public:
    using Transport::Transport;

    void read(std::span<char> room, std::chrono::steady_clock::duration timeout) override;
    void send(std::span<const char> bytes, std::chrono::steady_clock::duration timeout) override;
    void close_write(std::chrono::steady_clock::duration timeout) override;
    void on_completion(HttpOp op, int result) override;

private:
    // The send of sending_ that waits for room, with a linked timeout.
    void send_waiting();

    // First: one byte each, in the padding behind Transport's members.
    bool send_without_waiting_ = false;  // the send in flight is the MSG_DONTWAIT try
    bool last_send_short_ = false;       // the last send took fewer bytes than offered
    // The send in flight: its bytes and timeout, kept for the waiting retry.
    std::span<const char> sending_;
    std::chrono::steady_clock::duration send_timeout_{};
};

// The duration as an io_uring timespec, never below 1 ms.
__kernel_timespec to_timespec(std::chrono::steady_clock::duration timeout);

}  // namespace splicer::daemon
