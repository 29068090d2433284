// tls::Session as a byte transport: 1 MiB each way byte-exact with a real libssl client over
// loopback TCP, half-close by close_notify in both directions, a TCP FIN without
// close_notify reported as a truncation, and hostile bytes in memory (no socket at all).

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <catch2/catch.hpp>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "support/sockets.h"
#include "support/streams.h"
#include "support/test_certificates.h"
#include "support/tls_session_server.h"
#include "tls/openssl_handles.h"
#include "tls/server_context.h"
#include "tls/session.h"

namespace splicer::test {
namespace {

std::unique_ptr<tls::ServerContext> make_a_test_context() {
    const TestCertificates& pki = shared_pki();
    auto context = tls::ServerContext::create({.certificates = {{pki.a_chain, pki.a_key, {}}}});
    if (!context) {
        FAIL("ServerContext::create: " << context.error().message);
    }
    return std::move(*context);
}

// A blocking libssl client on a loopback socket with 10 s send/receive timeouts, trusting
// the test CA and checking the name, so a stall fails the test rather than hanging it.
struct SessionClient {
    tls::SslCtxPtr context;
    UniqueFd socket;
    tls::SslPtr ssl;

    explicit SessionClient(std::uint16_t port) : context(SSL_CTX_new(TLS_client_method())) {
        REQUIRE(context);
        REQUIRE(SSL_CTX_load_verify_locations(context.get(), shared_pki().ca.c_str(), nullptr) ==
                1);
        SSL_CTX_set_verify(context.get(), SSL_VERIFY_PEER, nullptr);
        socket = connect_to(port);
        const timeval timeout{10, 0};
        ::setsockopt(socket.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        ::setsockopt(socket.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
        ssl.reset(SSL_new(context.get()));
        REQUIRE(ssl);
        SSL_set_fd(ssl.get(), socket.get());
        SSL_set_tlsext_host_name(ssl.get(), "a.test");
        SSL_set1_host(ssl.get(), "a.test");
        REQUIRE(SSL_connect(ssl.get()) == 1);
    }
};

// A libssl client asking for `server_name`, in memory: what it writes is read from `network`,
// what is written there it reads.
struct MemoryClient {
    explicit MemoryClient(const char* server_name) {
        BIO* inner = nullptr;
        BIO* outer = nullptr;
        REQUIRE(BIO_new_bio_pair(&inner, 65536, &outer, 65536) == 1);
        network.reset(outer);
        SSL_set_bio(ssl.get(), inner, inner);
        SSL_set_connect_state(ssl.get());
        SSL_set_tlsext_host_name(ssl.get(), server_name);
    }

    tls::SslCtxPtr context{SSL_CTX_new(TLS_client_method())};
    tls::SslPtr ssl{SSL_new(context.get())};
    tls::BioPtr network;
};

}  // namespace

TEST_CASE("TLS session: 1 MiB each way is byte-exact across the client's close_notify",
          "[tls_termination]") {
    constexpr std::uint64_t kBytes = 1 << 20;
    const auto context = make_a_test_context();
    TlsSessionServer server(*context, TlsServerBehaviour::sink_then_reply, kBytes);
    SessionClient client(server.port());

    ByteGenerator generator(3);
    Sha256Hasher sent_hash;
    for (std::uint64_t sent = 0; sent < kBytes;) {
        const std::string chunk = generator.take(50000);  // not a record size on purpose
        const std::size_t size =
            static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), kBytes - sent));
        std::size_t written = 0;
        REQUIRE(SSL_write_ex(client.ssl.get(), chunk.data(), size, &written) == 1);
        sent_hash.update(chunk.data(), size);
        sent += size;
    }
    // The client's half-close: its close_notify; the server replies after it.
    REQUIRE(SSL_shutdown(client.ssl.get()) == 0);

    Sha256Hasher received_hash;
    std::uint64_t received = 0;
    std::string buffer(65536, '\0');
    int last_error = SSL_ERROR_NONE;
    for (int reads = 0; reads < 100000; ++reads) {
        std::size_t got = 0;
        const int result = SSL_read_ex(client.ssl.get(), buffer.data(), buffer.size(), &got);
        if (result != 1) {
            last_error = SSL_get_error(client.ssl.get(), result);
            INFO("client: " << tls::take_openssl_error("none"));
            CHECK(last_error == SSL_ERROR_ZERO_RETURN);
            break;
        }
        received_hash.update(buffer.data(), got);
        received += got;
    }
    // The server's close_notify ended the stream (not a FIN or an error).
    CHECK(last_error == SSL_ERROR_ZERO_RETURN);
    CHECK(received == kBytes);
    CHECK(received_hash.hex() == sha256_of_generated("", 7, kBytes));

    const auto report = server.next_report();
    REQUIRE(report);
    INFO("server: " << report->error);
    CHECK(report->error.empty());
    CHECK(report->received == kBytes);
    CHECK(report->received_sha256 == sent_hash.hex());
    CHECK(report->peer_close_notify);
    CHECK(report->sent_plain == kBytes);
}

TEST_CASE("TLS session: a TCP FIN without close_notify is reported as a truncation",
          "[tls_termination]") {
    const auto context = make_a_test_context();
    TlsSessionServer server(*context, TlsServerBehaviour::sink_then_reply, 10);
    SessionClient client(server.port());
    std::size_t written = 0;
    REQUIRE(SSL_write_ex(client.ssl.get(), "abc", 3, &written) == 1);
    // A FIN with no close_notify before it: an attacker cutting the stream looks like this.
    REQUIRE(::shutdown(client.socket.get(), SHUT_WR) == 0);

    const auto report = server.next_report();
    REQUIRE(report);
    CHECK(report->received == 3);
    CHECK(report->transport_eof);
    CHECK_FALSE(report->peer_close_notify);
    CHECK(report->error == "unexpected eof while reading");
    CHECK(report->sent_plain == 0);  // the reply waits for a close_notify that never came
}

// In memory, no socket: what the io_uring handler will see for hostile first bytes on a
// terminating rule (the probe matched a ClientHello prefix, the rest can be anything).
TEST_CASE("TLS session: bytes that are not a ClientHello fail the handshake with an alert",
          "[tls_termination]") {
    const auto context = make_a_test_context();
    // The alert waiting to be sent: 5 bytes of record header and 2 of alert; OpenSSL sends
    // none to what looks like an HTTP request (a plain-HTTP client could not read it).
    const auto [label, input, reason, alert_bytes] =
        GENERATE(table<std::string, std::string, std::string, std::size_t>({
            {"plain HTTP", "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", "http request", 0},
            {"a TLS record of the wrong type", std::string("\x17\x03\x01\x00\x05hello", 10),
             "unexpected message", 7},
            {"a handshake record holding garbage",
             std::string("\x16\x03\x01\x00\x08\x01\x00\x00\x04\xff\xff\xff\xff", 13),
             "length mismatch", 7},
        }));
    CAPTURE(label);
    auto session = tls::Session::create(*context);
    REQUIRE(session);
    CHECK(session->ingest(std::as_bytes(std::span(input))) == input.size());
    CHECK(session->handshake() == tls::Status::failed);
    CHECK(session->error() == reason);
    CHECK_FALSE(session->handshake_done());
    CHECK(session->pending_cipher_bytes() == alert_bytes);
}

// The io_uring handler starts the session on a connection whose ClientHello the probe has
// only peeked at: it ingests from byte 0, in whatever pieces recv() returns. One byte at a
// time is the worst case; a libssl client in memory is the peer.
TEST_CASE("TLS session: a handshake fed one byte at a time completes", "[tls_termination]") {
    const auto context = make_a_test_context();
    auto server = tls::Session::create(*context);
    REQUIRE(server);
    MemoryClient peer("a.test");
    tls::SslPtr& client = peer.ssl;
    tls::BioPtr& client_network = peer.network;

    std::string byte(1, '\0');
    bool client_done = false;
    for (int round = 0; round < 200000 && !(client_done && server->handshake_done()); ++round) {
        client_done = SSL_do_handshake(client.get()) == 1;
        ERR_clear_error();
        if (BIO_read(client_network.get(), byte.data(), 1) == 1) {  // client -> server
            REQUIRE(server->ingest(std::as_bytes(std::span(byte))) == 1);
        }
        if (server->handshake() == tls::Status::failed) {
            FAIL("server handshake failed at round " << round << ": " << server->error());
        }
        const auto pending = server->pending_cipher();  // server -> client, one byte too
        if (!pending.empty()) {
            REQUIRE(BIO_write(client_network.get(), pending.data(), 1) == 1);
            server->consume_cipher(1);
        }
    }
    CHECK(client_done);
    REQUIRE(server->handshake_done());
    CHECK(server->server_name() == "a.test");
    CHECK(server->version() == std::string_view("TLSv1.3"));
}

// The session holds its ciphertext queues itself (no allocation of their own), so the SSL's
// BIO must follow every move: a handler's session is moved into its transport, and into a
// TLS relay after a 101. Here the server's session moves to another object (constructed,
// then assigned over a live session of its own) between every step of a handshake and of
// the data after it; a BIO left pointing at the old place would read and write queues that
// no longer are the session's.
TEST_CASE("TLS session: moved between every step, it completes its handshake and carries data",
          "[tls_termination]") {
    const auto context = make_a_test_context();
    auto created = tls::Session::create(*context);
    REQUIRE(created);
    std::optional<tls::Session> server(std::move(created).value());
    // A move: constructed from the session, then assigned over another live one.
    const auto move_server = [&] {
        tls::Session moved(std::move(*server));
        auto other = tls::Session::create(*context);
        REQUIRE(other);
        server.emplace(std::move(other).value());
        *server = std::move(moved);
    };
    MemoryClient peer("a.test");
    tls::SslPtr& client = peer.ssl;
    tls::BioPtr& client_network = peer.network;
    std::string buffer(65536, '\0');
    // Whatever the client wrote goes to the server, whatever the server wrote to the client.
    const auto carry = [&] {
        const int n =
            BIO_read(client_network.get(), buffer.data(), static_cast<int>(buffer.size()));
        if (n > 0) {
            const auto bytes = std::as_bytes(std::span(buffer.data(), static_cast<std::size_t>(n)));
            REQUIRE(server->ingest(bytes) == bytes.size());
        }
        move_server();
        const auto pending = server->pending_cipher();
        if (!pending.empty()) {
            REQUIRE(
                BIO_write(client_network.get(), pending.data(), static_cast<int>(pending.size())) ==
                static_cast<int>(pending.size()));
            server->consume_cipher(pending.size());
        }
    };

    bool client_done = false;
    for (int round = 0; round < 20 && !(client_done && server->handshake_done()); ++round) {
        client_done = SSL_do_handshake(client.get()) == 1;
        ERR_clear_error();
        carry();
        move_server();
        if (server->handshake() == tls::Status::failed) {
            FAIL("server handshake failed at round " << round << ": " << server->error());
        }
        carry();
    }
    REQUIRE(client_done);
    REQUIRE(server->handshake_done());

    const std::string request = "ping through a moving session";
    std::size_t written = 0;
    REQUIRE(SSL_write_ex(client.get(), request.data(), request.size(), &written) == 1);
    carry();
    std::string got(64, '\0');
    const tls::Session::Io read = server->read_plain(std::as_writable_bytes(std::span(got)));
    REQUIRE(read.status == tls::Status::ok);
    CHECK(got.substr(0, read.bytes) == request);

    move_server();
    const std::string reply = "pong";
    CHECK(server->write_plain(std::as_bytes(std::span(reply))).bytes == reply.size());
    // Our close_notify once: asked again (after a move) it queues nothing more.
    REQUIRE(server->close_notify() == tls::Status::ok);
    const std::size_t with_alert = server->pending_cipher_bytes();
    move_server();
    CHECK(server->close_notify() == tls::Status::ok);
    CHECK(server->pending_cipher_bytes() == with_alert);
    carry();
    std::size_t n = 0;
    REQUIRE(SSL_read_ex(client.get(), got.data(), got.size(), &n) == 1);
    CHECK(got.substr(0, n) == reply);
    CHECK(SSL_read_ex(client.get(), got.data(), got.size(), &n) == 0);
    CHECK(SSL_get_error(client.get(), 0) == SSL_ERROR_ZERO_RETURN);
}

}  // namespace splicer::test
