#include "support/tls_session_client.h"

#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <span>
#include <vector>

#include "support/tls_cipher_flush.h"

namespace splicer::test {

TlsClientReport run_tls_client(tls::Session& session, const UniqueFd& socket,
                               const std::string& request, std::chrono::milliseconds timeout,
                               std::size_t received_limit) {
    TlsClientReport report;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::array<std::byte, 16384> buffer{};
    std::vector<std::byte> inbound;  // received, not yet taken by ingest()
    std::size_t inbound_taken = 0;
    std::size_t request_taken = 0;
    bool transport_eof = false;
    const auto finish = [&](std::string error) {
        report.error = std::move(error);
        return report;
    };

    // Each round: feed, drive, flush, then wait for the socket; 100000 rounds bound a
    // session that keeps answering without progress.
    for (int round = 0; round < 100000; ++round) {
        bool output_blocked = false;
        if (inbound_taken < inbound.size()) {
            inbound_taken += session.ingest(std::span(inbound).subspan(inbound_taken));
        }
        bool failed = false;
        if (!session.handshake_done()) {
            const tls::Status status = session.handshake();
            output_blocked = status == tls::Status::want_output;
            failed = status == tls::Status::failed;
            if (session.handshake_done()) {
                report.handshake_done = true;
                report.server_name = session.server_name();
                report.version = session.version();
                report.resumed = session.resumed();
            }
        }
        while (!failed && session.handshake_done() && request_taken < request.size()) {
            const tls::Session::Io io =
                session.write_plain(std::as_bytes(std::span(request)).subspan(request_taken));
            request_taken += io.bytes;
            failed = io.status == tls::Status::failed;
            if (io.status == tls::Status::want_output) {
                output_blocked = true;
                break;
            }
        }
        while (!failed && session.handshake_done() && !report.peer_close_notify) {
            const tls::Session::Io io = session.read_plain(buffer);
            if (io.bytes > 0) {
                report.received.append(reinterpret_cast<const char*>(buffer.data()), io.bytes);
                if (report.received.size() >= received_limit) {
                    return report;
                }
                continue;
            }
            output_blocked = output_blocked || io.status == tls::Status::want_output;
            report.peer_close_notify = io.status == tls::Status::closed;
            failed = io.status == tls::Status::failed;
            break;
        }
        // What the session queued (an alert after a failure too) goes out before returning.
        // A send error is left to the next read (the server's reset or EOF) to report.
        (void)flush_pending_cipher(session, socket);
        if (failed) {
            return finish(session.error());
        }
        const bool flushed = session.pending_cipher_bytes() == 0;
        if (report.peer_close_notify && flushed) {
            return report;
        }
        if (output_blocked && flushed) {
            continue;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            return finish("timed out");
        }
        short events = 0;
        if (!transport_eof && inbound_taken == inbound.size()) {
            events |= POLLIN;
        }
        if (!flushed) {
            events |= POLLOUT;
        }
        if (events == 0) {
            return finish("stuck: nothing to send and nothing more to read");
        }
        pollfd one{socket.get(), events, 0};
        if (::poll(&one, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) {
            return finish(std::string("poll: ") + std::strerror(errno));
        }
        if ((events & POLLIN) != 0 && (one.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
            const ssize_t got = ::recv(socket.get(), buffer.data(), buffer.size(), MSG_DONTWAIT);
            if (got > 0) {
                inbound.assign(buffer.begin(), buffer.begin() + got);
                inbound_taken = 0;
            } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                transport_eof = true;
                session.ingest_end();
            }
        }
    }
    return finish("no progress in 100000 rounds");
}

}  // namespace splicer::test
