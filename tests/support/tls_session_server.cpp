#include "support/tls_session_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <span>
#include <stdexcept>
#include <vector>

#include "support/streams.h"
#include "support/tls_cipher_flush.h"

namespace splicer::test {
namespace {

constexpr std::size_t kReadChunk = 16384;

std::span<const std::byte> as_bytes(const std::string& text, std::size_t from) {
    return std::as_bytes(std::span(text)).subspan(from);
}

}  // namespace

TlsSessionServer::TlsSessionServer(const tls::ServerContext& context, TlsServerBehaviour behaviour,
                                   std::uint64_t reply_bytes,
                                   std::chrono::milliseconds per_connection)
    : context_(context),
      behaviour_(behaviour),
      reply_bytes_(reply_bytes),
      per_connection_(per_connection),
      listener_(listen_loopback()),
      stop_(::eventfd(0, EFD_CLOEXEC)) {
    if (!stop_) {
        throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
    }
    thread_ = std::thread([this] { run(); });
}

TlsSessionServer::~TlsSessionServer() {
    const std::uint64_t one = 1;
    static_cast<void>(::write(stop_.get(), &one, sizeof one));
    thread_.join();
}

std::optional<TlsConnectionReport> TlsSessionServer::next_report(
    std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    if (!reported_.wait_for(lock, timeout, [this] { return !reports_.empty(); })) {
        return std::nullopt;
    }
    TlsConnectionReport report = std::move(reports_.front());
    reports_.pop_front();
    return report;
}

void TlsSessionServer::run() {
    for (;;) {
        std::array<pollfd, 2> fds{{{listener_.fd.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}}};
        if (::poll(fds.data(), fds.size(), -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;
        }
        if (fds[1].revents != 0) {
            return;
        }
        UniqueFd socket(
            ::accept4(listener_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!socket) {
            continue;
        }
        TlsConnectionReport report = serve(std::move(socket));
        {
            const std::lock_guard lock(mutex_);
            reports_.push_back(std::move(report));
        }
        reported_.notify_all();
    }
}

TlsConnectionReport TlsSessionServer::serve(UniqueFd socket) {
    TlsConnectionReport report;
    auto created = tls::Session::create(context_);
    if (!created) {
        report.error = created.error().message;
        return report;
    }
    tls::Session& session = *created;
    const auto deadline = std::chrono::steady_clock::now() + per_connection_;
    Sha256Hasher received_hash;
    ByteGenerator generator(7);
    std::array<std::byte, kReadChunk> buffer{};
    std::vector<std::byte> inbound;  // received, not yet taken by ingest()
    std::size_t inbound_taken = 0;
    std::string outgoing;  // plaintext to write, not yet taken by write_plain()
    std::size_t outgoing_taken = 0;
    bool reply_started = false;
    bool close_queued = false;
    bool failed = false;
    const auto fail = [&](std::string why) {
        failed = true;
        report.error = std::move(why);
    };

    for (;;) {
        // Set when the session answered want_output: once its buffer is sent, call again
        // at once rather than wait in poll() for input that may never come.
        bool output_blocked = false;
        if (inbound_taken < inbound.size()) {
            inbound_taken += session.ingest(std::span(inbound).subspan(inbound_taken));
        }
        if (!failed && !session.handshake_done()) {
            const tls::Status status = session.handshake();
            output_blocked = status == tls::Status::want_output;
            if (status == tls::Status::failed) {
                fail(session.error());
            } else if (session.handshake_done()) {
                report.handshake_done = true;
                report.server_name = session.server_name();
                report.alpn = session.alpn();
                report.version = session.version();
                report.resumed = session.resumed();
            }
        }
        while (!failed && session.handshake_done() && !report.peer_close_notify) {
            const tls::Session::Io io = session.read_plain(buffer);
            if (io.bytes > 0) {
                received_hash.update(buffer.data(), io.bytes);
                report.received += io.bytes;
                continue;
            }
            output_blocked = output_blocked || io.status == tls::Status::want_output;
            if (io.status == tls::Status::closed) {
                report.peer_close_notify = true;
            } else if (io.status == tls::Status::failed) {
                fail(session.error());
            }
            break;
        }
        if (!failed && session.handshake_done() && !reply_started) {
            if (behaviour_ == TlsServerBehaviour::greet_and_close) {
                const std::string name(session.server_name());
                outgoing = "hello " + (name.empty() ? std::string("-") : name) + "\n";
                reply_started = true;
            } else if (report.peer_close_notify) {
                reply_started = true;
            }
        }
        while (reply_started && !close_queued && !failed) {
            if (outgoing_taken == outgoing.size()) {
                const std::uint64_t left = behaviour_ == TlsServerBehaviour::sink_then_reply
                                               ? reply_bytes_ - report.sent_plain
                                               : 0;
                if (left == 0) {
                    const tls::Status closing = session.close_notify();
                    output_blocked = output_blocked || closing == tls::Status::want_output;
                    if (closing == tls::Status::ok) {
                        close_queued = true;
                    } else if (closing == tls::Status::failed) {
                        fail(session.error());
                    }
                    break;
                }
                outgoing = generator.take(
                    static_cast<std::size_t>(std::min<std::uint64_t>(left, kReadChunk)));
                outgoing_taken = 0;
                report.sent_plain += outgoing.size();
            }
            const tls::Session::Io io = session.write_plain(as_bytes(outgoing, outgoing_taken));
            outgoing_taken += io.bytes;
            if (io.status == tls::Status::failed) {
                fail(session.error());
            }
            if (io.status == tls::Status::want_output) {
                output_blocked = true;
                break;  // send first
            }
        }
        if (const int error = flush_pending_cipher(session, socket); error != 0) {
            if (!failed) {
                fail(std::string("send: ") + std::strerror(error));
            }
            return report;
        }
        const bool flushed = session.pending_cipher_bytes() == 0;
        if (output_blocked && flushed && !failed) {
            continue;
        }
        if (failed && flushed) {
            break;
        }
        if (close_queued && flushed && (report.peer_close_notify || report.transport_eof)) {
            break;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            fail("timed out");
            break;
        }
        short events = 0;
        if (!report.transport_eof && inbound_taken == inbound.size()) {
            events |= POLLIN;
        }
        if (!flushed) {
            events |= POLLOUT;
        }
        if (events == 0) {
            fail("stuck: nothing to send and nothing more to read");
            break;
        }
        pollfd one{socket.get(), events, 0};
        if (::poll(&one, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) {
            fail(std::string("poll: ") + std::strerror(errno));
            break;
        }
        if ((events & POLLIN) != 0 && (one.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
            const ssize_t got = ::recv(socket.get(), buffer.data(), buffer.size(), MSG_DONTWAIT);
            if (got > 0) {
                inbound.assign(buffer.begin(), buffer.begin() + got);
                inbound_taken = 0;
            } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                report.transport_eof = true;
                session.ingest_end();
            }
        }
    }
    report.received_sha256 = received_hash.hex();
    return report;
}

}  // namespace splicer::test
