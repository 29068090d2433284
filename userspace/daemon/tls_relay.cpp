// The relay of a terminated WebSocket (tls_relay.h): every completion lands in pump(), which
// moves what can move in both directions and then asks for the recvs that are due. Each
// buffer has at most one operation on it at a time, and is never moved while one is.

#include "daemon/tls_relay.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "plane/end_reason.h"
#include "splicer/log.h"

namespace splicer::daemon {

namespace {

__kernel_timespec to_timespec(std::chrono::steady_clock::duration timeout) {
    // Never 0: a zero timeout would fire at once, again and again.
    const auto ns = std::max<std::int64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count(), 1'000'000);
    return {.tv_sec = ns / 1'000'000'000, .tv_nsec = ns % 1'000'000'000};
}

std::size_t direction_from(TlsRelay::Side side) {
    return side == TlsRelay::Side::client ? kClientToBackend : kBackendToClient;
}

std::uint8_t code(TlsRelayOp op) {
    return static_cast<std::uint8_t>(op);
}

// Indexes of the per-side flags (TlsRelay::Side's values).
constexpr std::size_t kClient = 0;
constexpr std::size_t kBackend = 1;

}  // namespace

std::span<std::byte> RelayBuffer::room() {
    if (!data_) {
        // Not zero-filled: a recv or a copy writes what is kept.
        data_ = std::make_unique_for_overwrite<std::byte[]>(kBytes);
        capacity_ = kBytes;
    }
    start_ = end_ = 0;
    return {data_.get(), capacity_};
}

void RelayBuffer::assign(std::span<const std::byte> bytes) {
    release();
    if (bytes.empty()) {
        return;
    }
    capacity_ = std::max(kBytes, bytes.size());
    data_ = std::make_unique_for_overwrite<std::byte[]>(capacity_);
    std::memcpy(data_.get(), bytes.data(), bytes.size());
    end_ = bytes.size();
}

void RelayBuffer::consumed(std::size_t bytes) {
    start_ += std::min(bytes, end_ - start_);
    if (start_ == end_) {
        start_ = end_ = 0;
    }
}

TlsRelay::TlsRelay(Connection& connection, TlsRelayContext& context, TlsRelayStart start)
    : connection_(connection),
      context_(context),
      context_owner_(std::move(start.context_owner)),
      session_(std::move(start.session)),
      idle_timeout_(start.idle_timeout) {
    from_client_.assign(start.client_cipher);
    to_backend_.assign(start.client_plain);
    from_backend_.assign(start.backend_plain);
}

std::size_t TlsRelay::buffered_bytes() const {
    return from_client_.capacity() + to_backend_.capacity() + from_backend_.capacity() +
           to_client_.capacity() + session_.pending_cipher_bytes();
}

void TlsRelay::start() {
    last_progress_ = std::chrono::steady_clock::now();
    arm_idle_timer(idle_timeout_);
    pump();
}

void TlsRelay::pump() {
    // Freeing the session's outgoing buffer (a cipher send started) lets a write_plain or a
    // read_plain that wanted output go on, which may fill it again: a few rounds at most, as
    // only one cipher send is in flight.
    constexpr int kMaxRounds = 3;
    for (int round = 0; round < kMaxRounds && !ended_; ++round) {
        pump_up();
        pump_down();
        if (ended_ || !flush_cipher()) {
            break;
        }
    }
    if (ended_) {
        return;
    }
    arm_recvs();
    finish_if_done();
}

bool TlsRelay::pump_up() {
    if (up_done_ || sending_[kBackend]) {
        return false;
    }
    if (!to_backend_.empty()) {
        send_to(Side::backend, to_backend_.pending());
        return true;
    }
    // Each repeat ingests at least one more byte, so it ends with the buffer.
    for (;;) {
        const std::size_t taken = session_.ingest(from_client_.pending());
        from_client_.consumed(taken);
        const tls::Session::Io io = session_.read_plain(to_backend_.room());
        if (io.status == tls::Status::ok && io.bytes > 0) {
            to_backend_.filled(io.bytes);
            send_to(Side::backend, to_backend_.pending());
            return true;
        }
        if (io.status == tls::Status::want_input && taken > 0) {
            continue;
        }
        to_backend_.release();
        if (io.status == tls::Status::want_input && eof_[kClient] && from_client_.empty()) {
            // The client's FIN without a close_notify, every whole record before it relayed:
            // the end of its bytes all the same (a WebSocket frames its own messages; nginx
            // relays this too). The session is not told (Session::ingest_end): OpenSSL 3 takes
            // an unexpected EOF for a fatal error, and the backend's bytes still go to the
            // client through the same session.
            finish_up();
            return true;
        }
        switch (io.status) {
            case tls::Status::closed:  // the client's close_notify
                finish_up();
                return true;
            case tls::Status::failed:
                log::info("tls_relay_error",
                          {{"conn", std::to_string(connection_.id)}, {"error", session_.error()}});
                end("tls_error");
                return false;
            default:
                // want_input: arm_recvs() reads the client; want_output: flush_cipher() makes
                // room and the next pump reads again.
                return false;
        }
    }
}

bool TlsRelay::pump_down() {
    if (close_notify_queued_) {
        return false;
    }
    bool moved = false;
    while (!from_backend_.empty()) {
        const tls::Session::Io io = session_.write_plain(from_backend_.pending());
        if (io.status == tls::Status::ok && io.bytes > 0) {
            from_backend_.consumed(io.bytes);
            bytes_[kBackendToClient] += io.bytes;
            context_.count_relayed(kBackendToClient, io.bytes);
            moved = true;
            continue;
        }
        if (io.status == tls::Status::failed) {
            log::info("tls_relay_error",
                      {{"conn", std::to_string(connection_.id)}, {"error", session_.error()}});
            end("tls_error");
            return false;
        }
        return moved;  // want_output: the client takes what is queued first
    }
    if (eof_[kBackend]) {
        // Every byte the backend sent before its FIN is in the session: its end follows them.
        from_backend_.release();
        if (session_.close_notify() == tls::Status::failed) {
            end("tls_error");
            return false;
        }
        close_notify_queued_ = true;
        moved = true;
    }
    return moved;
}

bool TlsRelay::flush_cipher() {
    if (sending_[kClient]) {
        return false;
    }
    std::size_t copied = 0;
    if (!down_done_ && session_.pending_cipher_bytes() > 0) {
        // Copied out of the session: its buffer is only valid until the next write, and
        // read_plain() may write (alerts, key update answers) while the send is in flight.
        const std::span<std::byte> room = to_client_.room();
        while (copied < room.size()) {
            const std::span<const std::byte> cipher = session_.pending_cipher();
            if (cipher.empty()) {
                break;
            }
            const std::size_t take = std::min(cipher.size(), room.size() - copied);
            std::memcpy(room.data() + copied, cipher.data(), take);
            session_.consume_cipher(take);
            copied += take;
        }
    } else if (down_done_) {
        // After our FIN nothing more can reach the client (a late key update answer).
        session_.consume_cipher(session_.pending_cipher_bytes());
    }
    if (copied == 0) {
        to_client_.release();
        if (close_notify_queued_ && !down_done_) {
            // The close_notify went out: the FIN follows it.
            down_done_ = true;
            ::shutdown(fd_of(Side::client), SHUT_WR);
        }
        return false;
    }
    to_client_.filled(copied);
    send_to(Side::client, to_client_.pending());
    return true;
}

void TlsRelay::arm_recvs() {
    if (!up_done_ && !eof_[kClient] && !receiving_[kClient] && from_client_.empty()) {
        recv_from(Side::client);
    }
    if (!close_notify_queued_ && !eof_[kBackend] && !receiving_[kBackend] &&
        from_backend_.empty()) {
        recv_from(Side::backend);
    }
}

void TlsRelay::finish_up() {
    up_done_ = true;
    from_client_.release();
    to_backend_.release();
    ::shutdown(fd_of(Side::backend), SHUT_WR);
}

void TlsRelay::finish_if_done() {
    if (up_done_ && down_done_ && !sending_[kClient] && !sending_[kBackend]) {
        end("done");
    }
}

void TlsRelay::recv_from(Side side) {
    RelayBuffer& buffer = side == Side::client ? from_client_ : from_backend_;
    const std::span<std::byte> room = buffer.room();
    receiving_[static_cast<std::size_t>(side)] = true;
    io_uring_sqe* sqe =
        context_.sqe_for(connection_, TlsRelayOp::relay_recv, static_cast<std::uint8_t>(side));
    io_uring_prep_recv(sqe, fd_of(side), room.data(), room.size(), 0);
}

void TlsRelay::send_to(Side side, std::span<const std::byte> bytes) {
    sending_[static_cast<std::size_t>(side)] = true;
    io_uring_sqe* sqe =
        context_.sqe_for(connection_, TlsRelayOp::relay_send, static_cast<std::uint8_t>(side));
    io_uring_prep_send(sqe, fd_of(side), bytes.data(), bytes.size(), MSG_NOSIGNAL);
}

void TlsRelay::arm_idle_timer(std::chrono::steady_clock::duration after) {
    idle_armed_ = true;
    idle_timespec_ = to_timespec(after);
    io_uring_prep_timeout(context_.sqe_for(connection_, TlsRelayOp::relay_idle, 0), &idle_timespec_,
                          0, 0);
}

void TlsRelay::on_completion(std::uint8_t op, std::uint8_t arg, int result,
                             std::uint32_t /*flags*/) {
    const Side side = arg == 0 ? Side::client : Side::backend;
    switch (static_cast<TlsRelayOp>(op)) {
        case TlsRelayOp::relay_recv:
            receiving_[static_cast<std::size_t>(side)] = false;
            if (!closing()) {
                on_recv(side, result);
            }
            return;
        case TlsRelayOp::relay_send:
            sending_[static_cast<std::size_t>(side)] = false;
            if (!closing()) {
                on_sent(side, result);
            }
            return;
        case TlsRelayOp::relay_idle:
            idle_armed_ = false;
            if (!closing()) {
                on_idle_timer(result);
            }
            return;
    }
}

void TlsRelay::on_closing(HandlerContext& context) {
    if (idle_armed_) {
        context.remove_handler_timeout(connection_, code(TlsRelayOp::relay_idle));
    }
}

void TlsRelay::on_recv(Side side, int result) {
    if (result < 0) {
        fail("recv", side, result);
        return;
    }
    if (result == 0) {
        eof_[static_cast<std::size_t>(side)] = true;
    } else {
        last_progress_ = std::chrono::steady_clock::now();
        RelayBuffer& buffer = side == Side::client ? from_client_ : from_backend_;
        buffer.filled(static_cast<std::size_t>(result));
        if (side == Side::client && up_done_) {
            buffer.release();  // after the client's close_notify: nothing to relay
        }
    }
    pump();
}

void TlsRelay::on_sent(Side side, int result) {
    if (result <= 0) {
        fail("send", side, result == 0 ? -EPIPE : result);
        return;
    }
    last_progress_ = std::chrono::steady_clock::now();
    const auto sent = static_cast<std::size_t>(result);
    RelayBuffer& buffer = side == Side::client ? to_client_ : to_backend_;
    buffer.consumed(sent);
    if (side == Side::backend) {
        bytes_[kClientToBackend] += sent;
        context_.count_relayed(kClientToBackend, sent);
    }
    if (!buffer.empty()) {
        send_to(side, buffer.pending());  // a short send: the rest, before anything else
        return;
    }
    buffer.release();
    pump();
}

void TlsRelay::on_idle_timer(int result) {
    if (result == -ECANCELED) {
        return;
    }
    const auto idle = std::chrono::steady_clock::now() - last_progress_;
    if (idle >= idle_timeout_) {
        end("idle_timeout");
        return;
    }
    arm_idle_timer(idle_timeout_ - idle);
}

void TlsRelay::fail(const char* call, Side side, int result) {
    end(plane::failed_call(call, -result, direction_from(side)));
}

void TlsRelay::end(std::string_view reason) {
    if (ended_) {
        return;
    }
    ended_ = true;
    context_.close_connection(connection_, reason);
}

}  // namespace splicer::daemon
