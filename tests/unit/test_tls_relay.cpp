// daemon::TlsRelay, the relay of a terminated WebSocket, run for real: a real io_uring loop
// (support/tls_relay_loop.h), a real libssl client in a thread on one loopback socket, a real
// TCP backend on another; the server side's handshake is done by tls::Session before the relay
// takes over, as the HTTP exchange will have done (its tickets still unsent). Byte-exact both
// ways at once, half-close each way, a backend that closes right after its last write, a
// client that stops reading (bounded memory, measured), and the idle bound.

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "daemon/tls_relay.h"
#include "support/sockets.h"
#include "support/streams.h"
#include "support/test_certificates.h"
#include "support/tls_relay_loop.h"
#include "tls/openssl_handles.h"
#include "tls/server_context.h"
#include "tls/session.h"

namespace splicer::test {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t kMiB = 1 << 20;
// What one relay may hold in userspace: its four 16 KiB buffers and the session's outgoing
// ciphertext buffer (tls::Session::kDefaultBufferBytes).
constexpr std::size_t kRelayBound =
    4 * daemon::RelayBuffer::kBytes + tls::Session::kDefaultBufferBytes;

const tls::ServerContext& shared_context() {
    static const std::unique_ptr<tls::ServerContext> context = [] {
        const TestCertificates& pki = shared_pki();
        auto made = tls::ServerContext::create({.certificates = {{pki.a_chain, pki.a_key, {}}}});
        if (!made) {
            throw std::runtime_error("ServerContext::create: " + made.error().message);
        }
        return std::move(*made);
    }();
    return *context;
}

std::string openssl_error() {
    const unsigned long code = ERR_get_error();
    char text[256] = "unknown";
    if (code != 0) {
        ERR_error_string_n(code, text, sizeof text);
    }
    return text;
}

// --- the client: libssl on a non-blocking socket, writing and reading at once ---------------

enum class ClientCloses {
    after_sending,             // close_notify as soon as everything is sent (a half-close)
    after_relay_close_notify,  // close_notify once the relay's has been read
    tcp_fin_after_sending,     // shutdown(SHUT_WR) without a close_notify
    never,                     // until the relay ends the connection
};

struct ClientPlan {
    Outgoing up;
    ClientCloses closes = ClientCloses::after_sending;
    // Non-zero: the bytes go one at a time, this far apart.
    std::chrono::milliseconds trickle_every{0};
    const std::atomic<bool>* may_read = nullptr;  // null: read from the start
    int receive_buffer = 0;                       // SO_RCVBUF; 0: the default
    std::string raw_after_handshake;  // written on the socket itself, past TLS (hostile bytes)
    int max_version = TLS1_3_VERSION;
    std::chrono::milliseconds limit{30s};
};

struct ClientReport {
    std::uint64_t sent = 0;
    std::uint64_t received = 0;
    std::string received_sha256;
    bool close_notify = false;  // the relay's close_notify was read
    bool eof = false;           // the socket ended (FIN or reset) without one
    bool timed_out = false;
    std::string error;
};

ClientReport run_client(std::uint16_t port, ClientPlan plan) {
    ClientReport report;
    tls::SslCtxPtr context(SSL_CTX_new(TLS_client_method()));
    if (!context ||
        SSL_CTX_load_verify_locations(context.get(), shared_pki().ca.c_str(), nullptr) != 1) {
        report.error = "client context: " + openssl_error();
        return report;
    }
    SSL_CTX_set_verify(context.get(), SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_max_proto_version(context.get(), plan.max_version);
    SSL_CTX_set_mode(context.get(),
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    UniqueFd socket = connect_to(port);
    if (plan.receive_buffer > 0) {
        ::setsockopt(socket.get(), SOL_SOCKET, SO_RCVBUF, &plan.receive_buffer,
                     sizeof plan.receive_buffer);
    }
    const timeval timeout{10, 0};
    ::setsockopt(socket.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    ::setsockopt(socket.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    tls::SslPtr ssl(SSL_new(context.get()));
    SSL_set_fd(ssl.get(), socket.get());
    SSL_set_tlsext_host_name(ssl.get(), "a.test");
    SSL_set1_host(ssl.get(), "a.test");
    if (SSL_connect(ssl.get()) != 1) {
        report.error = "SSL_connect: " + openssl_error();
        return report;
    }
    if (!plan.raw_after_handshake.empty()) {
        write_all(socket.get(), plan.raw_after_handshake);
    }
    set_nonblocking(socket.get());

    ByteGenerator generator(plan.up.seed);
    std::string chunk = plan.up.prefix;
    std::size_t offset = 0;
    std::uint64_t generated_left = plan.up.generated;
    bool close_sent = false;
    Sha256Hasher hasher;
    std::vector<char> buffer(64 * 1024);
    const auto deadline = Clock::now() + plan.limit;
    auto next_trickle = Clock::now();

    while (true) {
        if (Clock::now() > deadline) {
            report.timed_out = true;
            break;
        }
        bool progress = false;
        bool want_write = false;
        if (offset == chunk.size() && generated_left > 0) {
            const bool trickling = plan.trickle_every.count() > 0;
            if (!trickling || Clock::now() >= next_trickle) {
                const std::uint64_t size =
                    trickling ? 1 : std::min<std::uint64_t>(generated_left, 64 * 1024);
                chunk = generator.take(static_cast<std::size_t>(size));
                offset = 0;
                generated_left -= size;
                next_trickle = Clock::now() + plan.trickle_every;
            }
        }
        const bool all_sent = offset == chunk.size() && generated_left == 0;
        if (offset < chunk.size()) {
            std::size_t written = 0;
            if (SSL_write_ex(ssl.get(), chunk.data() + offset, chunk.size() - offset, &written) ==
                1) {
                offset += written;
                report.sent += written;
                progress = true;
            } else {
                const int error = SSL_get_error(ssl.get(), 0);
                if (error == SSL_ERROR_WANT_WRITE) {
                    want_write = true;
                } else if (error != SSL_ERROR_WANT_READ) {
                    report.error = "SSL_write: " + openssl_error();
                    break;
                }
            }
        } else if (all_sent && !close_sent && plan.closes == ClientCloses::tcp_fin_after_sending) {
            ::shutdown(socket.get(), SHUT_WR);
            close_sent = true;
            progress = true;
        } else if (all_sent && !close_sent &&
                   (plan.closes == ClientCloses::after_sending ||
                    (plan.closes == ClientCloses::after_relay_close_notify &&
                     report.close_notify))) {
            if (SSL_shutdown(ssl.get()) >= 0) {
                close_sent = true;
                progress = true;
            } else if (SSL_get_error(ssl.get(), -1) == SSL_ERROR_WANT_WRITE) {
                want_write = true;
            } else {
                report.error = "SSL_shutdown: " + openssl_error();
                break;
            }
        }
        const bool reading =
            (plan.may_read == nullptr || plan.may_read->load()) && !report.close_notify;
        if (reading) {
            std::size_t got = 0;
            if (SSL_read_ex(ssl.get(), buffer.data(), buffer.size(), &got) == 1) {
                hasher.update(buffer.data(), got);
                report.received += got;
                progress = true;
            } else {
                const int error = SSL_get_error(ssl.get(), 0);
                if (error == SSL_ERROR_ZERO_RETURN) {
                    report.close_notify = true;
                    progress = true;
                } else if (error == SSL_ERROR_SYSCALL || error == SSL_ERROR_SSL) {
                    report.eof = true;  // FIN or reset without close_notify
                    break;
                }
            }
        }
        const bool done_sending = all_sent && (close_sent || plan.closes == ClientCloses::never);
        if (report.close_notify && done_sending) {
            break;
        }
        if (!progress) {
            pollfd watch{socket.get(),
                         static_cast<short>((reading ? POLLIN : 0) | (want_write ? POLLOUT : 0)),
                         0};
            ::poll(&watch, 1, 10);
        }
    }
    report.received_sha256 = hasher.hex();
    return report;
}

// --- the server side's handshake, before the relay ------------------------------------------

struct Handshaken {
    tls::Session session;
    std::vector<std::byte> unread;  // ciphertext received past what the session took
};

// Drives tls::Session's handshake over the blocking socket `fd`, leaving what the session
// writes after its last step (TLS 1.3 tickets) unsent, for the relay to flush.
Handshaken handshake_server(int fd) {
    auto made = tls::Session::create(shared_context());
    if (!made) {
        throw std::runtime_error("Session::create: " + made.error().message);
    }
    Handshaken done{std::move(*made), {}};
    const auto deadline = Clock::now() + 10s;
    std::vector<std::byte> buffer(16 * 1024);
    while (Clock::now() < deadline) {
        if (!done.unread.empty()) {
            const std::size_t taken = done.session.ingest(done.unread);
            done.unread.erase(done.unread.begin(),
                              done.unread.begin() + static_cast<std::ptrdiff_t>(taken));
        }
        const tls::Status status = done.session.handshake();
        if (status == tls::Status::ok) {
            return done;
        }
        if (status == tls::Status::failed) {
            throw std::runtime_error("server handshake: " + done.session.error());
        }
        for (auto cipher = done.session.pending_cipher(); !cipher.empty();
             cipher = done.session.pending_cipher()) {
            write_all(fd, cipher.data(), cipher.size());
            done.session.consume_cipher(cipher.size());
        }
        if (status == tls::Status::want_input && done.unread.empty()) {
            pollfd watch{fd, POLLIN, 0};
            if (::poll(&watch, 1, 100) > 0) {
                const ssize_t got = ::recv(fd, buffer.data(), buffer.size(), 0);
                if (got <= 0) {
                    throw std::runtime_error("server handshake: the client went away");
                }
                done.unread.insert(done.unread.end(), buffer.begin(), buffer.begin() + got);
            }
        }
    }
    throw std::runtime_error("server handshake: timed out");
}

std::vector<std::byte> byte_vector_of(std::string_view text) {
    const auto bytes = std::as_bytes(std::span(text));
    return {bytes.begin(), bytes.end()};
}

// --- one relay between a client and a backend ------------------------------------------------

struct RelaySetup {
    std::string client_plain;   // handed over as decrypted client bytes, for the backend
    std::string backend_plain;  // handed over as backend bytes, for the client
    std::chrono::milliseconds idle_timeout{10s};
    int relay_buffers = 0;  // SO_SNDBUF/SO_RCVBUF on the relay's sockets; 0: the defaults
};

// The relay's two sockets and the backend's end, with the client's thread started and its
// handshake done.
struct Rig {
    Listener front = listen_loopback();
    std::future<ClientReport> client;
    UniqueFd relay_client;
    UniqueFd relay_backend;
    UniqueFd backend;  // the backend's end of its connection with the relay
    std::optional<daemon::TlsRelayStart> start;  // set once the handshake is done

    Rig(ClientPlan plan, const RelaySetup& setup) {
        client = std::async(std::launch::async, run_client, front.port, std::move(plan));
        relay_client = accept_one(front);
        Handshaken handshaken = handshake_server(relay_client.get());
        auto [connected, accepted] = tcp_pair();
        relay_backend = std::move(connected);
        backend = std::move(accepted);
        if (setup.relay_buffers > 0) {
            ::setsockopt(relay_client.get(), SOL_SOCKET, SO_SNDBUF, &setup.relay_buffers,
                         sizeof setup.relay_buffers);
            ::setsockopt(relay_backend.get(), SOL_SOCKET, SO_RCVBUF, &setup.relay_buffers,
                         sizeof setup.relay_buffers);
        }
        // The daemon's sockets are non-blocking; io_uring waits for them all the same.
        set_nonblocking(relay_client.get());
        set_nonblocking(relay_backend.get());
        start.emplace(daemon::TlsRelayStart{.session = std::move(handshaken.session),
                                            .context_owner = {},
                                            .client_cipher = std::move(handshaken.unread),
                                            .client_plain = byte_vector_of(setup.client_plain),
                                            .backend_plain = byte_vector_of(setup.backend_plain),
                                            .idle_timeout = setup.idle_timeout});
    }

    std::unique_ptr<TlsRelayLoop> run(std::chrono::milliseconds limit = 30s) {
        return std::make_unique<TlsRelayLoop>(std::move(relay_client), std::move(relay_backend),
                                              std::move(*start), limit);
    }
};

}  // namespace

TEST_CASE("TLS relay: 8 MiB each way at once arrive byte-exact, bytes read before it first",
          "[tls_relay]") {
    const int version = GENERATE(TLS1_3_VERSION, TLS1_2_VERSION);
    CAPTURE(version);
    const Outgoing up{"", 8 * kMiB, 21};
    const Outgoing down{"", 8 * kMiB, 22};
    Rig rig({.up = up, .closes = ClientCloses::after_sending, .max_version = version},
            {.client_plain = "early-up:", .backend_plain = "early-down:"});
    const int backend_fd = rig.backend.get();
    auto backend = std::async(std::launch::async, [backend_fd, down] {
        return transfer_both_ways(
            backend_fd,
            {.send = down, .expect = kUntilEof, .after_send = AfterSend::shutdown_write});
    });
    auto loop = rig.run();
    const ClientReport client = rig.client.get();
    const TransferResult served = backend.get();
    const TlsRelayOutcome outcome = loop->wait();

    CAPTURE(client.error, served.error, outcome.end, outcome.peak_buffered);
    // The backend got the bytes handed over first, then the client's, then the half-close.
    CHECK(served.received == 9 + up.generated);
    CHECK(served.received_sha256 == sha256_of_generated("early-up:", up.seed, up.generated));
    CHECK(served.eof);
    // The client got the backend's handed-over bytes first, then its stream, then the
    // close_notify that stands for the backend's FIN.
    CHECK(client.received == 11 + down.generated);
    CHECK(client.received_sha256 == sha256_of_generated("early-down:", down.seed, down.generated));
    CHECK(client.close_notify);
    CHECK(client.error.empty());
    CHECK_FALSE(client.timed_out);
    REQUIRE(outcome.finished);
    CHECK(outcome.end == "done");
    CHECK(outcome.bytes[daemon::kClientToBackend] == 9 + up.generated);
    CHECK(outcome.bytes[daemon::kBackendToClient] == 11 + down.generated);
    CHECK(loop->counted(daemon::kClientToBackend) == outcome.bytes[daemon::kClientToBackend]);
    CHECK(loop->counted(daemon::kBackendToClient) == outcome.bytes[daemon::kBackendToClient]);
    CHECK(outcome.peak_buffered <= kRelayBound);
}

TEST_CASE("TLS relay: the client's close_notify half-closes toward the backend, which answers",
          "[tls_relay]") {
    const int version = GENERATE(TLS1_3_VERSION, TLS1_2_VERSION);
    CAPTURE(version);
    const Outgoing up{"", kMiB, 31};
    constexpr std::uint64_t kReply = 4 * kMiB;
    Rig rig({.up = up, .closes = ClientCloses::after_sending, .max_version = version}, {});
    const int backend_fd = rig.backend.get();
    // The backend answers only once it has read the client's end.
    auto backend = std::async(std::launch::async, [backend_fd] {
        const ReadReport read = read_stream(backend_fd, {.max_time = 20s});
        const SendReport sent = send_stream(
            backend_fd, {.max_bytes = kReply, .max_time = 20s, .seed = 32, .shutdown_after = true});
        return std::make_pair(read, sent);
    });
    auto loop = rig.run();
    const ClientReport client = rig.client.get();
    const auto answered = backend.get();
    const ReadReport& read = answered.first;
    const SendReport& sent = answered.second;
    const TlsRelayOutcome outcome = loop->wait();

    CAPTURE(client.error, read.error, sent.error, outcome.end);
    CHECK(read.eof);
    CHECK(read.bytes == up.generated);
    CHECK(read.sha256 == sha256_of_generated("", up.seed, up.generated));
    CHECK(sent.bytes == kReply);
    CHECK(client.received == kReply);
    CHECK(client.received_sha256 == sha256_of_generated("", 32, kReply));
    CHECK(client.close_notify);
    REQUIRE(outcome.finished);
    CHECK(outcome.end == "done");
}

TEST_CASE("TLS relay: a backend closing right after its last write loses none of it",
          "[tls_relay]") {
    constexpr std::uint64_t kReply = 8 * kMiB;
    Rig rig({.up = {"hello", 0, 41}, .closes = ClientCloses::after_relay_close_notify}, {});
    const int backend_fd = rig.backend.get();
    UniqueFd backend_end = std::move(rig.backend);
    auto backend = std::async(std::launch::async, [backend_fd, &backend_end] {
        const std::string hello = read_exactly(backend_fd, 5, 10000);
        // close() at once after the last byte: the relay reads the rest and the FIN from its
        // socket after the backend is gone.
        SendReport sent = send_stream(
            backend_fd, {.max_bytes = kReply, .max_time = 20s, .seed = 42, .close_after = true});
        static_cast<void>(backend_end.release());  // closed by send_stream
        return std::make_pair(hello, sent);
    });
    auto loop = rig.run();
    const ClientReport client = rig.client.get();
    const auto served = backend.get();
    const std::string& hello = served.first;
    const SendReport& sent = served.second;
    const TlsRelayOutcome outcome = loop->wait();

    CAPTURE(client.error, sent.error, outcome.end);
    CHECK(hello == "hello");
    CHECK(sent.bytes == kReply);
    CHECK(client.received == kReply);
    CHECK(client.received_sha256 == sha256_of_generated("", 42, kReply));
    CHECK(client.close_notify);
    REQUIRE(outcome.finished);
    CHECK(outcome.end == "done");
}

TEST_CASE("TLS relay: a client that stops reading stops the backend being read, memory bounded",
          "[tls_relay]") {
    constexpr std::uint64_t kStream = 8 * kMiB;
    constexpr int kSocketBuffer = 64 * 1024;
    std::atomic<bool> may_read{false};
    Rig rig({.up = {},
             .closes = ClientCloses::after_relay_close_notify,
             .may_read = &may_read,
             .receive_buffer = kSocketBuffer},
            {.relay_buffers = kSocketBuffer});
    ::setsockopt(rig.backend.get(), SOL_SOCKET, SO_SNDBUF, &kSocketBuffer, sizeof kSocketBuffer);
    const int backend_fd = rig.backend.get();
    std::atomic<std::uint64_t> written{0};
    auto backend = std::async(std::launch::async, [backend_fd, &written] {
        return send_stream(backend_fd, {.max_bytes = kStream,
                                        .max_time = 30s,
                                        .seed = 51,
                                        .shutdown_after = true,
                                        .progress = &written});
    });
    auto loop = rig.run();

    // Wait until the backend can write no more: no progress for 500 ms (at most 10 s).
    std::uint64_t last = 0;
    auto still_since = Clock::now();
    for (const auto give_up = Clock::now() + 10s; Clock::now() < give_up;) {
        std::this_thread::sleep_for(50ms);
        const std::uint64_t now_written = written.load();
        if (now_written != last) {
            last = now_written;
            still_since = Clock::now();
        } else if (Clock::now() - still_since >= 500ms) {
            break;
        }
    }
    const std::uint64_t stalled_at = written.load();
    const std::size_t peak_while_stalled = loop->peak_buffered();
    may_read = true;
    const ClientReport client = rig.client.get();
    const SendReport sent = backend.get();
    const TlsRelayOutcome outcome = loop->wait();

    // What TCP can hold on the way: the backend's send buffer, the relay's receive buffer
    // toward it and send buffer toward the client, the client's receive buffer (each as
    // the kernel doubled it), in plaintext or ciphertext; plus the relay's own buffers.
    constexpr std::uint64_t kKernelHold = 4 * 2 * static_cast<std::uint64_t>(kSocketBuffer);
    CAPTURE(stalled_at, peak_while_stalled, outcome.peak_buffered, client.error, sent.error,
            outcome.end);
    CHECK(stalled_at < kStream);
    CHECK(stalled_at <= kKernelHold + kRelayBound);
    CHECK(peak_while_stalled <= kRelayBound);
    CHECK(outcome.peak_buffered <= kRelayBound);
    // Nothing was lost to the pause.
    CHECK(sent.bytes == kStream);
    CHECK(client.received == kStream);
    CHECK(client.received_sha256 == sha256_of_generated("", 51, kStream));
    CHECK(client.close_notify);
    REQUIRE(outcome.finished);
    CHECK(outcome.end == "done");
}

TEST_CASE("TLS relay: idle_timeout ends a relay where nothing moves, not one that trickles",
          "[tls_relay]") {
    constexpr auto kIdle = 400ms;
    constexpr std::uint64_t kTrickled = 12;  // one byte every 100 ms: 1.2 s of activity
    Rig rig({.up = {"", kTrickled, 61}, .closes = ClientCloses::never, .trickle_every = 100ms},
            {.idle_timeout = kIdle});
    const int backend_fd = rig.backend.get();
    auto backend = std::async(std::launch::async,
                              [backend_fd] { return read_stream(backend_fd, {.max_time = 10s}); });
    auto loop = rig.run(10s);
    const ClientReport client = rig.client.get();
    const ReadReport read = backend.get();
    const TlsRelayOutcome outcome = loop->wait();

    CAPTURE(client.error, outcome.end, outcome.duration.count());
    REQUIRE(outcome.finished);
    CHECK(outcome.end == "idle_timeout");
    // Alive through the trickle (each byte restarts the clock), gone one idle_timeout later.
    CHECK(outcome.duration >= 1000ms + kIdle);
    CHECK(outcome.duration <= 1200ms + kIdle + 1500ms);
    CHECK(read.bytes == kTrickled);
    CHECK(read.sha256 == sha256_of_generated("", 61, kTrickled));
    CHECK(read.eof);
    CHECK(client.eof);
    CHECK_FALSE(client.close_notify);
}

TEST_CASE("TLS relay: the client's FIN without close_notify also half-closes toward the backend",
          "[tls_relay]") {
    const Outgoing up{"", 256 * 1024, 71};
    constexpr std::uint64_t kReply = 256 * 1024;
    Rig rig({.up = up, .closes = ClientCloses::tcp_fin_after_sending}, {});
    const int backend_fd = rig.backend.get();
    auto backend = std::async(std::launch::async, [backend_fd] {
        const ReadReport read = read_stream(backend_fd, {.max_time = 20s});
        const SendReport sent = send_stream(
            backend_fd, {.max_bytes = kReply, .max_time = 20s, .seed = 72, .shutdown_after = true});
        return std::make_pair(read, sent);
    });
    auto loop = rig.run();
    const ClientReport client = rig.client.get();
    const auto answered = backend.get();
    const ReadReport& read = answered.first;
    const TlsRelayOutcome outcome = loop->wait();

    CAPTURE(client.error, read.error, outcome.end);
    CHECK(read.eof);
    CHECK(read.bytes == up.generated);
    CHECK(read.sha256 == sha256_of_generated("", up.seed, up.generated));
    CHECK(client.received == kReply);
    CHECK(client.received_sha256 == sha256_of_generated("", 72, kReply));
    CHECK(client.close_notify);
    REQUIRE(outcome.finished);
    CHECK(outcome.end == "done");
}

TEST_CASE("TLS relay: bytes from the client that are not TLS records end it as tls_error",
          "[tls_relay]") {
    // An application data record header, then bytes no key decrypts: bad_record_mac.
    const std::string forged = std::string("\x17\x03\x03\x00\x20", 5) + std::string(32, 'x');
    Rig rig({.up = {}, .closes = ClientCloses::never, .raw_after_handshake = forged}, {});
    const int backend_fd = rig.backend.get();
    auto backend = std::async(std::launch::async,
                              [backend_fd] { return read_stream(backend_fd, {.max_time = 10s}); });
    auto loop = rig.run(10s);
    const ClientReport client = rig.client.get();
    const ReadReport read = backend.get();
    const TlsRelayOutcome outcome = loop->wait();

    CAPTURE(client.error, outcome.end);
    REQUIRE(outcome.finished);
    CHECK(outcome.end == "tls_error");
    CHECK(read.bytes == 0);  // nothing forged reached the backend
    CHECK(read.eof);
    CHECK(client.eof);
}

}  // namespace splicer::test
