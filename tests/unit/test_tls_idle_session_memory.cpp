// What an idle terminated TLS session keeps on the heap: server sessions that completed a
// full handshake, read a request and wrote a response, then waited for more (a read that
// wants input), as a keep-alive connection between requests. The heap in use per session is
// bounded below what any 16 KiB buffer held per session would add (a ciphertext queue,
// OpenSSL's record buffers); the daemon-wide figure with the connection's other parts is
// tests/privileged/test_tls_idle_memory.cpp.

#include <malloc.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "support/test_certificates.h"
#include "support/tls_memory_pair.h"
#include "tls/server_context.h"
#include "tls/session.h"
#include "tls/upstream_context.h"

#if defined(__SANITIZE_ADDRESS__)
// The sanitizer runtime's count of bytes allocated and not freed (GCC 12 ships no
// sanitizer/allocator_interface.h to declare it).
extern "C" std::size_t __sanitizer_get_current_allocated_bytes();
#endif

namespace splicer::test {
namespace {

// Bytes the program has allocated and not freed (ASan's allocator replaces glibc's, whose
// statistics then see nothing).
std::size_t heap_in_use() {
#if defined(__SANITIZE_ADDRESS__)
    return __sanitizer_get_current_allocated_bytes();
#else
    return mallinfo2().uordblks;
#endif
}

std::span<const std::byte> bytes_of(const std::string& text) {
    return std::as_bytes(std::span<const char>(text));
}

// A server session as a keep-alive connection leaves it between requests: handshaken, a
// request read, a response written and sent, and a read that found nothing waiting.
tls::Session idle_server(const tls::ServerContext& server_context,
                         const tls::UpstreamContext& client_context) {
    auto server = tls::Session::create(server_context);
    auto client = tls::Session::create_client(client_context, "a.test");
    REQUIRE(server);
    REQUIRE(client);
    REQUIRE(handshake_in_memory(*client, *server));
    const std::string request = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    REQUIRE(client->write_plain(bytes_of(request)).bytes == request.size());
    pass_pending_cipher(*client, *server);
    std::string buffer(4096, '\0');
    const tls::Session::Io read =
        server->read_plain(std::as_writable_bytes(std::span<char>(buffer)));
    REQUIRE(read.bytes == request.size());
    const std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
    REQUIRE(server->write_plain(bytes_of(response)).bytes == response.size());
    pass_pending_cipher(*server, *client);
    REQUIRE(client->read_plain(std::as_writable_bytes(std::span<char>(buffer))).bytes ==
            response.size());
    const tls::Session::Io idle =
        server->read_plain(std::as_writable_bytes(std::span<char>(buffer)));
    REQUIRE(idle.bytes == 0);
    REQUIRE(idle.status == tls::Status::want_input);
    return std::move(server).value();
}

}  // namespace

TEST_CASE("tls session: an idle server session after a request holds its SSL state and no "
          "buffer",
          "[tls_termination][memory]") {
    const TestCertificates pki;
    auto server_context =
        tls::ServerContext::create({.certificates = {{pki.a_chain, pki.a_key, {}}}});
    REQUIRE(server_context);
    auto client_context = tls::UpstreamContext::create({.verify = false, .ca_file = {}});
    REQUIRE(client_context);

    constexpr std::size_t kSessions = 100;
    std::vector<tls::Session> idle;
    idle.reserve(kSessions + 10);
    // OpenSSL's one-time set-up (provider caches, the error strings) before the baseline.
    for (int warm = 0; warm < 10; ++warm) {
        idle.push_back(idle_server(**server_context, **client_context));
    }
    idle.clear();
    const std::size_t before = heap_in_use();
    for (std::size_t i = 0; i < kSessions; ++i) {
        idle.push_back(idle_server(**server_context, **client_context));
    }
    const std::size_t after = heap_in_use();
    const double per_session =
        (static_cast<double>(after) - static_cast<double>(before)) / kSessions;
    WARN("heap per idle server session: " << per_session << " bytes");
    for (const tls::Session& session : idle) {
        CHECK_FALSE(session.holds_cipher_buffers());
    }
    // Measured 10.9-11.1 KB (OpenSSL 3.0.19, TLS 1.3, X25519, the test CA's RSA key): the
    // SSL object (8.6 KB bare), its session, cipher contexts and key shares. A 16 KiB record
    // or ciphertext buffer kept per session fails it.
    CHECK(per_session < 16 * 1024);
}

}  // namespace splicer::test
