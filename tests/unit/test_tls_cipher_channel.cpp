// tls::CipherQueue and the channel BIO (tls/cipher_channel.h): a queue holds a buffer only
// while bytes wait in it, never takes more than its capacity, keeps what is pending in one
// contiguous span; and a whole TLS handshake plus data both ways between two in-memory
// sessions leaves every queue empty and bufferless.

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstddef>
#include <span>
#include <string>

#include "support/client_hello.h"
#include "support/streams.h"
#include "support/test_certificates.h"
#include "support/tls_memory_pair.h"
#include "tls/cipher_channel.h"
#include "tls/server_context.h"
#include "tls/session.h"
#include "tls/upstream_context.h"

namespace splicer::test {
namespace {

std::string text_of_bytes(std::span<const std::byte> bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

}  // namespace

TEST_CASE("tls cipher queue: a buffer only while bytes wait, bounded, contiguous",
          "[tls_termination]") {
    tls::CipherQueue queue(8);
    CHECK_FALSE(queue.holds_buffer());
    CHECK(queue.put({}) == 0);
    CHECK_FALSE(queue.holds_buffer());  // nothing put: nothing allocated

    CHECK(queue.put(as_bytes("abcdef")) == 6);
    CHECK(queue.holds_buffer());
    CHECK(queue.put(as_bytes("ghijk")) == 2);  // capacity 8: the rest is refused
    CHECK(queue.put(as_bytes("x")) == 0);
    CHECK(text_of_bytes(queue.pending()) == "abcdefgh");

    queue.consume(3);
    CHECK(text_of_bytes(queue.pending()) == "defgh");
    // Full at the back: the next put moves what is pending to the front first.
    CHECK(queue.put(as_bytes("ijkl")) == 3);
    CHECK(text_of_bytes(queue.pending()) == "defghijk");

    queue.consume(100);  // more than pending: all of it
    CHECK(queue.empty());
    CHECK_FALSE(queue.holds_buffer());

    // A recv into room() that brings nothing gives the buffer back too.
    CHECK(queue.room().size() == 8);
    queue.filled(0);
    CHECK_FALSE(queue.holds_buffer());
    const std::span<std::byte> room = queue.room();
    room[0] = std::byte{'z'};
    queue.filled(1);
    CHECK(text_of_bytes(queue.pending()) == "z");
}

TEST_CASE("tls cipher channel: after a handshake and data both ways no session holds a buffer",
          "[tls_termination]") {
    const TestCertificates pki;
    auto server_context =
        tls::ServerContext::create({.certificates = {{pki.a_chain, pki.a_key, {}}}});
    REQUIRE(server_context);
    auto client_context = tls::UpstreamContext::create({.verify = true, .ca_file = pki.ca});
    REQUIRE(client_context);
    auto server = tls::Session::create(**server_context);
    auto client = tls::Session::create_client(**client_context, "a.test");
    REQUIRE(server);
    REQUIRE(client);
    CHECK_FALSE(server->holds_cipher_buffers());

    // The handshake over memory: each side's flight handed to the other until both are done.
    REQUIRE(handshake_in_memory(*client, *server));

    // 100 kB each way, through queues of 16 KiB.
    const std::string up = ByteGenerator(11).take(100000);
    const std::string down = ByteGenerator(12).take(100000);
    std::string server_got;
    std::string client_got;
    std::string buffer(16384, '\0');
    std::size_t up_sent = 0;
    std::size_t down_sent = 0;
    for (int rounds = 0;
         rounds < 1000 && (server_got.size() < up.size() || client_got.size() < down.size());
         ++rounds) {
        // One record's worth at a time, as the daemon's transports write (a retry after
        // want_output passes the same bytes again, as OpenSSL requires).
        if (up_sent < up.size()) {
            up_sent += client
                           ->write_plain(as_bytes(up).subspan(up_sent).first(
                               std::min<std::size_t>(16384, up.size() - up_sent)))
                           .bytes;
        }
        if (down_sent < down.size()) {
            down_sent += server
                             ->write_plain(as_bytes(down).subspan(down_sent).first(
                                 std::min<std::size_t>(16384, down.size() - down_sent)))
                             .bytes;
        }
        pass_pending_cipher(*client, *server);
        pass_pending_cipher(*server, *client);
        for (int reads = 0; reads < 16; ++reads) {
            const tls::Session::Io got =
                server->read_plain(std::as_writable_bytes(std::span<char>(buffer)));
            if (got.bytes == 0) {
                break;
            }
            server_got.append(buffer.data(), got.bytes);
        }
        for (int reads = 0; reads < 16; ++reads) {
            const tls::Session::Io got =
                client->read_plain(std::as_writable_bytes(std::span<char>(buffer)));
            if (got.bytes == 0) {
                break;
            }
            client_got.append(buffer.data(), got.bytes);
        }
    }
    CHECK(server_got == up);
    CHECK(client_got == down);
    // Idle now: every queue drained, so no session holds a ciphertext buffer.
    pass_pending_cipher(*client, *server);
    pass_pending_cipher(*server, *client);
    CHECK(server->pending_cipher_bytes() == 0);
    CHECK_FALSE(server->holds_cipher_buffers());
    CHECK_FALSE(client->holds_cipher_buffers());
}

}  // namespace splicer::test
