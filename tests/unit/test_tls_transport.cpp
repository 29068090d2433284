// daemon::TlsTransport on a real io_uring and a loopback TCP pair, a blocking libssl client on
// the other end in its own thread: the first read drives the handshake from the ClientHello,
// reads and sends report plaintext counts, close_write sends a close_notify, a FIN without
// one reads as an EOF, and a silent peer times the operation out as the contract says
// (daemon/transport.h).

#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "daemon/http_exchange.h"
#include "daemon/tls_transport.h"
#include "support/sockets.h"
#include "support/streams.h"
#include "support/test_certificates.h"
#include "tls/openssl_handles.h"
#include "tls/server_context.h"
#include "uring/ring.h"

namespace splicer::test {
namespace {

using daemon::HttpOp;
using namespace std::chrono_literals;

std::shared_ptr<const tls::ServerContext> make_shared_a_test_context() {
    const TestCertificates& pki = shared_pki();
    auto context = tls::ServerContext::create({.certificates = {{pki.a_chain, pki.a_key, {}}}});
    if (!context) {
        FAIL("ServerContext::create: " << context.error().message);
    }
    return std::shared_ptr<const tls::ServerContext>(std::move(*context));
}

struct Event {
    char kind = 0;  // 'r' read, 's' sent, 'c' closed
    int result = 0;
};

// The exchange's part: a ring that tags each operation with its op code, and a record of
// what the transport reported.
struct Harness final : daemon::TransportRing, daemon::TransportUser {
    uring::Ring ring;
    std::vector<Event> events;
    daemon::Transport* transport = nullptr;

    Harness() { REQUIRE(uring::Ring::init(ring, 64)); }

    io_uring_sqe* transport_sqe(HttpOp op, http::Side /*side*/) override {
        io_uring_sqe* sqe = ring.sqe();
        sqe->user_data = static_cast<std::uint64_t>(op);
        return sqe;
    }
    void on_read(http::Side /*side*/, int result) override { events.push_back({'r', result}); }
    void on_sent(http::Side /*side*/, int result) override { events.push_back({'s', result}); }
    void on_closed(http::Side /*side*/, int result) override { events.push_back({'c', result}); }

    // Room lending as the exchange does it, when `lending`: every offer is taken, and the
    // room asked for afterwards is `lent_room`.
    bool lending = false;
    int rooms_given_back = 0;
    int rooms_lent = 0;
    std::vector<char> lent_room;
    bool give_back_read_room(http::Side /*side*/) override {
        rooms_given_back += lending ? 1 : 0;
        return lending;
    }
    std::span<char> read_room(http::Side /*side*/) override {
        ++rooms_lent;
        return lent_room;
    }

    // One round of the ring: submits, waits up to 100 ms, hands the completions over.
    void run_once() {
        ring.submit_and_wait(100);
        ring.drain([this](const uring::Completion& cqe) {
            const auto op = static_cast<HttpOp>(cqe.user_data);
            if (op != HttpOp::http_timeout) {
                transport->on_completion(op, cqe.res);
            }
        });
    }

    // Runs the ring until the transport reports (at most 15 s).
    Event next() {
        const auto deadline = std::chrono::steady_clock::now() + 15s;
        while (events.empty() && std::chrono::steady_clock::now() < deadline) {
            run_once();
        }
        REQUIRE_FALSE(events.empty());
        const Event event = events.front();
        events.erase(events.begin());
        return event;
    }
};

// A blocking libssl client on `socket` (10 s timeouts), trusting the test CA, run by `script`
// in its own thread.
class ScriptedClient {
public:
    ScriptedClient(UniqueFd socket, std::function<void(SSL*, int)> script)
        : socket_(std::move(socket)), context_(SSL_CTX_new(TLS_client_method())) {
        SSL_CTX_load_verify_locations(context_.get(), shared_pki().ca.c_str(), nullptr);
        SSL_CTX_set_verify(context_.get(), SSL_VERIFY_PEER, nullptr);
        const timeval timeout{10, 0};
        ::setsockopt(socket_.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        ::setsockopt(socket_.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
        ssl_.reset(SSL_new(context_.get()));
        SSL_set_fd(ssl_.get(), socket_.get());
        SSL_set_tlsext_host_name(ssl_.get(), "a.test");
        SSL_set1_host(ssl_.get(), "a.test");
        thread_ = std::thread([this, script = std::move(script)] {
            handshake_ok_ = SSL_connect(ssl_.get()) == 1;
            if (handshake_ok_) {
                script(ssl_.get(), socket_.get());
            }
        });
    }
    ~ScriptedClient() { join(); }
    ScriptedClient(const ScriptedClient&) = delete;
    ScriptedClient& operator=(const ScriptedClient&) = delete;

    void join() {
        if (thread_.joinable()) {
            thread_.join();
        }
    }
    [[nodiscard]] bool handshake_ok() const { return handshake_ok_; }

private:
    UniqueFd socket_;
    tls::SslCtxPtr context_;
    tls::SslPtr ssl_;
    bool handshake_ok_ = false;
    std::thread thread_;
};

// A client that writes "first", then nothing until `speak` is set (10 s at most), then
// "second": a keep-alive client idle between two requests while the test looks.
ScriptedClient client_idle_between_writes(UniqueFd socket, std::promise<void>& speak) {
    return ScriptedClient(std::move(socket), [spoken = speak.get_future().share()](SSL* ssl, int) {
        std::size_t written = 0;
        SSL_write_ex(ssl, "first", 5, &written);
        spoken.wait_for(10s);
        SSL_write_ex(ssl, "second", 6, &written);
    });
}

std::unique_ptr<daemon::TlsTransport> transport_on(const UniqueFd& socket, Harness& harness,
                                                   std::shared_ptr<const tls::ServerContext> ctx) {
    auto session = tls::Session::create(*ctx);
    REQUIRE(session);
    auto transport = std::make_unique<daemon::TlsTransport>(
        socket, http::Side::client, harness, harness, ctx, std::move(session).value());
    harness.transport = transport.get();
    return transport;
}

std::string read_all_plain(SSL* ssl, std::size_t want) {
    std::string got;
    std::string buffer(16384, '\0');
    for (int reads = 0; reads < 10000 && got.size() < want; ++reads) {
        std::size_t n = 0;
        if (SSL_read_ex(ssl, buffer.data(), buffer.size(), &n) != 1) {
            break;
        }
        got.append(buffer.data(), n);
    }
    return got;
}

}  // namespace

TEST_CASE("tls transport: the first read drives the handshake, then plaintext both ways",
          "[tls_termination][transport]") {
    auto [server_socket, client_socket] = tcp_pair();
    Harness harness;
    auto transport = transport_on(server_socket, harness, make_shared_a_test_context());
    const std::string request = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    constexpr std::size_t kReply = 200000;  // several records, more than the BIO buffer
    const std::string reply = ByteGenerator(5).take(kReply);
    std::string client_got;
    ScriptedClient client(std::move(client_socket), [&](SSL* ssl, int) {
        std::size_t written = 0;
        SSL_write_ex(ssl, request.data(), request.size(), &written);
        client_got = read_all_plain(ssl, kReply);
    });

    std::vector<char> room(65536);
    transport->read(room, 10s);
    const Event read = harness.next();
    CHECK(read.kind == 'r');
    REQUIRE(read.result == static_cast<int>(request.size()));
    CHECK(std::string(room.data(), request.size()) == request);

    // The exchange's loop: send what was not taken yet until all of it went.
    std::size_t sent = 0;
    for (int sends = 0; sends < 1000 && sent < kReply; ++sends) {
        transport->send(std::span<const char>(reply).subspan(sent), 10s);
        const Event event = harness.next();
        REQUIRE(event.kind == 's');
        REQUIRE(event.result > 0);
        CHECK(static_cast<std::size_t>(event.result) <= daemon::TlsTransport::kMaxRecordPlaintext);
        sent += static_cast<std::size_t>(event.result);
    }
    CHECK(sent == kReply);
    client.join();
    CHECK(client.handshake_ok());
    CHECK(client_got.size() == kReply);
    CHECK(sha256_hex(client_got) == sha256_hex(reply));
    CHECK(transport->error().empty());
}

TEST_CASE("tls transport: close_write sends a close_notify the client reads as a clean end",
          "[tls_termination][transport]") {
    auto [server_socket, client_socket] = tcp_pair();
    Harness harness;
    auto transport = transport_on(server_socket, harness, make_shared_a_test_context());
    int client_end = SSL_ERROR_NONE;
    ScriptedClient client(std::move(client_socket), [&](SSL* ssl, int) {
        std::size_t written = 0;
        SSL_write_ex(ssl, "x", 1, &written);
        char byte = 0;
        std::size_t n = 0;
        const int result = SSL_read_ex(ssl, &byte, 1, &n);
        client_end = SSL_get_error(ssl, result);
    });
    std::vector<char> room(1024);
    transport->read(room, 10s);
    REQUIRE(harness.next().result == 1);
    transport->close_write(10s);
    const Event closed = harness.next();
    CHECK(closed.kind == 'c');
    CHECK(closed.result == 0);
    client.join();
    CHECK(client_end == SSL_ERROR_ZERO_RETURN);  // close_notify, not a bare FIN
}

TEST_CASE("tls transport: after close_write the linger read waits in a recv, not a poll, "
          "and ends at the client's close_notify",
          "[tls_termination][transport]") {
    auto [server_socket, client_socket] = tcp_pair();
    Harness harness;
    auto transport = transport_on(server_socket, harness, make_shared_a_test_context());
    std::promise<void> answer_close;
    ScriptedClient client(std::move(client_socket),
                          [answered = answer_close.get_future().share()](SSL* ssl, int) {
                              std::size_t written = 0;
                              SSL_write_ex(ssl, "x", 1, &written);
                              char byte = 0;
                              std::size_t n = 0;
                              SSL_read_ex(ssl, &byte, 1, &n);  // our close_notify
                              answered.wait_for(10s);
                              SSL_shutdown(ssl);  // the client's own close_notify
                          });
    std::vector<char> room(1024);
    transport->read(room, 10s);
    REQUIRE(harness.next().result == 1);
    transport->close_write(10s);
    REQUIRE(harness.next().result == 0);
    // The linger: the exchange reads until the client's end. A recv is armed at once (it
    // holds the session's receive buffer while it waits; a poll would hold none).
    transport->read(room, 10s);
    for (int rounds = 0; rounds < 3; ++rounds) {
        harness.run_once();
    }
    CHECK(harness.events.empty());
    CHECK(transport->session().holds_cipher_buffers());
    answer_close.set_value();
    const Event ended = harness.next();
    CHECK(ended.kind == 'r');
    CHECK(ended.result == 0);
    client.join();
    CHECK(transport->error().empty());
}

TEST_CASE("tls transport: a FIN without close_notify ends a read like an EOF",
          "[tls_termination][transport]") {
    auto [server_socket, client_socket] = tcp_pair();
    Harness harness;
    auto transport = transport_on(server_socket, harness, make_shared_a_test_context());
    ScriptedClient client(std::move(client_socket), [](SSL* ssl, int fd) {
        std::size_t written = 0;
        SSL_write_ex(ssl, "abc", 3, &written);
        ::shutdown(fd, SHUT_WR);  // cut: no close_notify
    });
    std::vector<char> room(1024);
    transport->read(room, 10s);
    const Event first = harness.next();
    REQUIRE(first.result == 3);
    client.join();
    transport->read(room, 10s);
    const Event end = harness.next();
    CHECK(end.kind == 'r');
    CHECK(end.result == 0);
}

TEST_CASE("tls transport: after a bare FIN from the client the response still goes out",
          "[tls_termination][transport]") {
    auto [server_socket, client_socket] = tcp_pair();
    Harness harness;
    auto transport = transport_on(server_socket, harness, make_shared_a_test_context());
    const std::string reply = ByteGenerator(9).take(100000);  // several records
    std::string client_got;
    ScriptedClient client(std::move(client_socket), [&](SSL* ssl, int fd) {
        std::size_t written = 0;
        SSL_write_ex(ssl, "GET", 3, &written);
        ::shutdown(fd, SHUT_WR);  // a bare FIN: the request is all, the answer still wanted
        client_got = read_all_plain(ssl, reply.size());
    });
    std::vector<char> room(1024);
    transport->read(room, 10s);
    REQUIRE(harness.next().result == 3);
    transport->read(room, 10s);
    REQUIRE(harness.next().result == 0);  // the FIN: the end of the client's bytes
    std::size_t sent = 0;
    for (int sends = 0; sends < 100 && sent < reply.size(); ++sends) {
        transport->send(std::span<const char>(reply).subspan(sent), 10s);
        const Event event = harness.next();
        REQUIRE(event.kind == 's');
        REQUIRE(event.result > 0);
        sent += static_cast<std::size_t>(event.result);
    }
    CHECK(sent == reply.size());
    transport->close_write(10s);
    CHECK(harness.next().result == 0);
    client.join();
    CHECK(client_got == reply);
    CHECK(transport->error().empty());
}

TEST_CASE("tls transport: a read waiting on an idle client holds no ciphertext buffer",
          "[tls_termination][transport]") {
    auto [server_socket, client_socket] = tcp_pair();
    Harness harness;
    auto transport = transport_on(server_socket, harness, make_shared_a_test_context());
    std::promise<void> speak;
    ScriptedClient client = client_idle_between_writes(std::move(client_socket), speak);
    std::vector<char> room(1024);
    transport->read(room, 10s);
    REQUIRE(harness.next().result == 5);
    transport->read(room, 10s);
    for (int rounds = 0; rounds < 3; ++rounds) {
        harness.run_once();  // the read is armed and waits
    }
    CHECK(harness.events.empty());
    CHECK_FALSE(transport->session().holds_cipher_buffers());
    speak.set_value();
    const Event second = harness.next();
    CHECK(second.result == 6);
    CHECK(std::string(room.data(), 6) == "second");
    CHECK_FALSE(transport->session().holds_cipher_buffers());
    client.join();
}

TEST_CASE("tls transport: a read waiting on a silent client gives its room back, "
          "and takes room again when records come",
          "[tls_termination][transport]") {
    auto [server_socket, client_socket] = tcp_pair();
    Harness harness;
    auto transport = transport_on(server_socket, harness, make_shared_a_test_context());
    std::promise<void> speak;
    ScriptedClient client = client_idle_between_writes(std::move(client_socket), speak);
    std::vector<char> room(1024, 'x');
    transport->read(room, 10s);  // the handshake, then "first" (whether it waited or not)
    REQUIRE(harness.next().result == 5);
    harness.lending = true;
    harness.lent_room.assign(1024, 'x');
    std::fill(room.begin(), room.end(), 'x');
    transport->read(room, 10s);
    for (int rounds = 0; rounds < 3; ++rounds) {
        harness.run_once();  // the read waits on the silent client
    }
    CHECK(harness.events.empty());
    // Offered back as soon as the client was silent with nothing buffered, not kept.
    CHECK(harness.rooms_given_back == 1);
    CHECK(harness.rooms_lent == 0);
    CHECK_FALSE(transport->session().holds_cipher_buffers());
    speak.set_value();
    const Event second = harness.next();
    CHECK(second.result == 6);
    // The bytes land in the room lent afterwards; the room given back is not touched.
    CHECK(harness.rooms_lent >= 1);
    CHECK(std::string(harness.lent_room.data(), 6) == "second");
    CHECK(std::string(room.data(), 6) == "xxxxxx");
    client.join();
}

TEST_CASE("tls transport: a peer silent after its handshake times a read out",
          "[tls_termination][transport]") {
    auto [server_socket, client_socket] = tcp_pair();
    Harness harness;
    auto transport = transport_on(server_socket, harness, make_shared_a_test_context());
    ScriptedClient client(std::move(client_socket), [](SSL*, int) {});  // handshake, then nothing
    std::vector<char> room(1024);
    const auto started = std::chrono::steady_clock::now();
    transport->read(room, 300ms);
    const Event read = harness.next();
    const auto took = std::chrono::steady_clock::now() - started;
    CHECK(read.kind == 'r');
    CHECK(read.result == -ECANCELED);
    CHECK(took >= 250ms);
    CHECK(took < 5s);
    client.join();
    CHECK(client.handshake_ok());
}

TEST_CASE("tls transport: bytes that are not TLS fail the read with the reason kept",
          "[tls_termination][transport]") {
    auto [server_socket, client_socket] = tcp_pair();
    Harness harness;
    auto transport = transport_on(server_socket, harness, make_shared_a_test_context());
    write_all(client_socket.get(), "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n");
    std::vector<char> room(1024);
    transport->read(room, 5s);
    const Event read = harness.next();
    CHECK(read.kind == 'r');
    CHECK(read.result == -EPROTO);
    CHECK_FALSE(transport->error().empty());
}

}  // namespace splicer::test
