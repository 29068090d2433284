// TLS between the socket and the exchange: each logical operation runs the session one step
// at a time, each io_uring operation (recv or send of ciphertext) under what is left of the
// logical operation's timeout.

#include "daemon/tls_transport.h"

#include <liburing.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "daemon/http_exchange.h"

namespace splicer::daemon {

// Every terminated connection keeps its client transport while idle: 184 bytes and its
// session's cipher queues in a chunk of their own (56 bytes) until session 31; 216 with the
// queues in the session (tls/session.h), one malloc chunk of 224 where there were 192 and 64.
// On LP64, where the idle-memory figures are measured.
static_assert(sizeof(void*) != 8 || sizeof(TlsTransport) <= 216,
              "an idle terminated connection's transport grew: does the member belong in it?");

namespace {
// Rounds of the session in one step() without an io_uring operation: each takes or gives
// bytes, so a handful suffices; past it something does not progress (a bug, not a peer).
constexpr int kMaxRoundsPerStep = 64;
}  // namespace

TlsTransport::TlsTransport(const UniqueFd& socket, http::Side side, TransportRing& ring,
                           TransportUser& user, std::shared_ptr<const void> context_owner,
                           tls::Session session)
    : Transport(socket, side, ring, user),
      context_owner_(std::move(context_owner)),
      session_(std::move(session)) {}

void TlsTransport::begin(Mode mode, std::chrono::steady_clock::duration timeout) {
    mode_ = mode;
    deadline_ = std::chrono::steady_clock::now() + timeout;
    step();
}

void TlsTransport::read(std::span<char> room, std::chrono::steady_clock::duration timeout) {
    room_ = room;
    room_given_back_ = false;
    begin(Mode::reading, timeout);
}

void TlsTransport::send(std::span<const char> bytes, std::chrono::steady_clock::duration timeout) {
    out_ = bytes;
    taken_ = 0;
    begin(Mode::sending, timeout);
}

void TlsTransport::close_write(std::chrono::steady_clock::duration timeout) {
    begin(Mode::closing, timeout);
}

std::chrono::steady_clock::duration TlsTransport::remaining() const {
    return deadline_ - std::chrono::steady_clock::now();
}

void TlsTransport::step() {
    for (int round = 0; round < kMaxRoundsPerStep; ++round) {
        if (mode_ == Mode::idle) {
            return;
        }
        if (failing_) {
            // The session queued its alert: it goes out (best effort), then the failure.
            if (!flush()) {
                finish(-EPROTO);
            }
            return;
        }
        const bool again = mode_ == Mode::reading   ? step_read()
                           : mode_ == Mode::sending ? step_send()
                                                    : step_close();
        if (!again) {
            return;
        }
    }
    error_ = "TLS session made no progress";
    finish(-EPROTO);
}

bool TlsTransport::step_read() {
    if (room_given_back_) {
        // Records came while the room was back with its lender: plaintext may now be there
        // to place (or not yet, if a record came only in part: then it goes back again).
        room_ = user_.read_room(side_);
        room_given_back_ = false;
    }
    const tls::Session::Io io = session_.read_plain(std::as_writable_bytes(room_));
    if (io.bytes > 0) {
        finish(static_cast<int>(io.bytes));
        return false;
    }
    switch (io.status) {
        case tls::Status::closed:
            finish(0);
            return false;
        case tls::Status::failed:
            error_ = session_.error();
            failing_ = true;
            return true;
        case tls::Status::want_output:
            if (!flush()) {
                fail(-EPROTO);
            }
            return false;
        case tls::Status::ok:
        case tls::Status::want_input:
            // Handshake flights and tickets go out before we wait for the peer, who may be
            // waiting for them.
            if (flush()) {
                return false;
            }
            if (eof_) {
                finish(0);
                return false;
            }
            receive();
            return false;
    }
    return false;
}

bool TlsTransport::step_send() {
    if (taken_ > 0) {
        if (flush()) {
            return false;  // the record goes out before the send is done
        }
        finish(static_cast<int>(taken_));
        return false;
    }
    // Ciphertext the session queued before (a TLS 1.3 server's tickets, written when the
    // client's Finished came in one read with its request) goes out in one send with this
    // record: one segment and one wake-up of the client instead of two.
    const std::size_t chunk = std::min(out_.size(), kMaxRecordPlaintext);
    const tls::Session::Io io = session_.write_plain(std::as_bytes(out_.first(chunk)));
    if (io.bytes > 0) {
        taken_ = io.bytes;
        return true;  // flushed next round
    }
    switch (io.status) {
        case tls::Status::want_output:
            // The queue is full (what waited in it, or a record partly written): send, retry.
            return !flush();
        case tls::Status::want_input:
            // A client's handshake (or a renegotiation refused) waits on the peer, once its
            // own flight (the ClientHello first) is out.
            if (flush()) {
                return false;
            }
            if (eof_) {
                fail(-EPIPE);
                return false;
            }
            receive();
            return false;
        case tls::Status::closed:
        case tls::Status::failed:
            error_ = session_.error();
            failing_ = true;
            return true;
        case tls::Status::ok:
            fail(-EPROTO);
            return false;
    }
    return false;
}

bool TlsTransport::step_close() {
    if (!close_queued_) {
        close_queued_ = true;
        // Before the handshake finished there is no close_notify to send (OpenSSL refuses
        // it); the shutdown alone ends our direction.
        if (session_.handshake_done()) {
            (void)session_.close_notify();
        }
    }
    if (flush()) {
        return false;
    }
    const int result = ::shutdown(socket_.get(), SHUT_WR) == 0 ? 0 : -errno;
    finish(result);
    return false;
}

void TlsTransport::receive() {
    if (session_.handshake_done() && session_.pending_input_bytes() == 0) {
        // Waiting for the peer's next records, most often an idle keep-alive client: a recv
        // would hold a receive buffer for as long as the client is silent. A poll holds
        // none; the buffer is taken when bytes are there (receive_now, on its completion).
        // The plaintext room goes back to its lender meanwhile (step_read asks again): the
        // exchange's 64 KiB buffer serves a busy connection instead of waiting here.
        if (mode_ == Mode::reading && !room_given_back_ && user_.give_back_read_room(side_)) {
            room_ = {};
            room_given_back_ = true;
        }
        if (close_queued_) {
            // After our close_notify the read is the exchange's linger (2 s at most) for the
            // client's close_notify or FIN, most often already on its way: straight to the
            // recv. A poll first would cost an operation, its linked timeout and a loop round
            // per connection, to spare the session's receive buffer for that brief while.
            receive_now();
            return;
        }
        polling_ = true;
        io_uring_sqe* poll = ring_.transport_sqe(HttpOp::http_recv, side_);
        io_uring_prep_poll_add(poll, socket_.get(), POLLIN | POLLRDHUP);
        poll->flags |= IOSQE_IO_LINK;
        link_timeout(remaining());
        return;
    }
    receive_now();
}

void TlsTransport::receive_now() {
    // Straight into the session's incoming queue: no buffer of our own, no copy. Not empty:
    // the session asks for input only once it has taken every byte it was given.
    const std::span<std::byte> room = session_.ingest_room();
    io_uring_sqe* recv = ring_.transport_sqe(HttpOp::http_recv, side_);
    io_uring_prep_recv(recv, socket_.get(), room.data(), room.size(), 0);
    recv->flags |= IOSQE_IO_LINK;
    link_timeout(remaining());
}

bool TlsTransport::flush() {
    const std::span<const std::byte> cipher = session_.pending_cipher();
    if (cipher.empty()) {
        return false;
    }
    // Tried first without waiting and so without a linked timeout: a record nearly always
    // fits the send buffer at once (daemon/transport.h, PlainTransport).
    send_without_waiting_ = true;
    io_uring_prep_send(ring_.transport_sqe(HttpOp::http_send, side_), socket_.get(), cipher.data(),
                       cipher.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    return true;
}

void TlsTransport::send_waiting() {
    send_without_waiting_ = false;
    const std::span<const std::byte> cipher = session_.pending_cipher();
    io_uring_sqe* send = ring_.transport_sqe(HttpOp::http_send, side_);
    io_uring_prep_send(send, socket_.get(), cipher.data(), cipher.size(), MSG_NOSIGNAL);
    send->flags |= IOSQE_IO_LINK;
    link_timeout(remaining());
}

void TlsTransport::fail(int result) {
    if (error_.empty()) {
        error_ = session_.error().empty() ? std::string(std::strerror(-result)) : session_.error();
    }
    finish(result);
}

void TlsTransport::finish(int result) {
    if (in_completion_) {
        done_ = result;
        return;
    }
    nop_result_ = result;
    io_uring_prep_nop(ring_.transport_sqe(HttpOp::http_close, side_));
}

void TlsTransport::on_completion(HttpOp op, int result) {
    in_completion_ = true;
    switch (op) {
        case HttpOp::http_recv:
            if (polling_) {
                // The poll before a recv: readable (or hung up: the recv says which).
                polling_ = false;
                if (result >= 0) {
                    receive_now();
                } else {
                    finish(result);
                }
                break;
            }
            session_.ingested(result > 0 ? static_cast<std::size_t>(result) : 0);
            if (result > 0) {
                step();
            } else if (result == 0) {
                // The end of the peer's bytes, not of the session: the session is not told
                // (Session::ingest_end), because OpenSSL 3 takes an EOF without close_notify
                // for a fatal error and then refuses every later write, so a client that
                // sends its request and a bare FIN (shutdown(SHUT_WR)) would get no
                // response. step_read() reports EOF once the session wants input that can
                // no longer come (a truncated record or handshake included).
                eof_ = true;
                step();
            } else if (failing_) {
                finish(-EPROTO);
            } else {
                finish(result);
            }
            break;
        case HttpOp::http_send:
            if (send_without_waiting_ && result == -EAGAIN) {
                send_waiting();  // no room now: wait for it
                break;
            }
            send_without_waiting_ = false;
            if (result > 0) {
                session_.consume_cipher(static_cast<std::size_t>(result));
                step();
            } else {
                finish(failing_ ? -EPROTO : result == 0 ? -EPIPE : result);
            }
            break;
        case HttpOp::http_close:
            if (nop_result_) {
                done_ = *nop_result_;
                nop_result_.reset();
            }
            break;
        default:
            break;
    }
    in_completion_ = false;
    if (!done_) {
        return;
    }
    const int result_now = *done_;
    done_.reset();
    const Mode finished = mode_;
    mode_ = Mode::idle;
    failing_ = false;
    // Reported last: the user may start the next operation from here.
    switch (finished) {
        case Mode::reading:
            user_.on_read(side_, result_now);
            return;
        case Mode::sending:
            user_.on_sent(side_, result_now);
            return;
        case Mode::closing:
            user_.on_closed(side_, result_now);
            return;
        case Mode::idle:
            return;
    }
}

TlsRelayStart TlsTransport::release_for_relay() {
    // Ciphertext received and not yet read is in the session's own queue: it goes along.
    return TlsRelayStart{.session = std::move(session_), .context_owner = context_owner_};
}

}  // namespace splicer::daemon
