// daemon::BackendKey (daemon/backend_pool.h): the backend pool's key, compared and hashed as
// it is. Two connections are interchangeable only when address, port, TLS client context and
// TLS name all agree; bytes of the address storage that name nothing (sin_zero) do not count.

#include <arpa/inet.h>
#include <netinet/in.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>

#include "daemon/backend_pool.h"

namespace splicer::test {
namespace {

net::SocketAddress backend_key_address(const char* text, std::uint16_t port) {
    net::SocketAddress out;
    auto* in4 = reinterpret_cast<sockaddr_in*>(&out.storage);
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
    if (::inet_pton(AF_INET, text, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        out.length = sizeof(sockaddr_in);
    } else {
        REQUIRE(::inet_pton(AF_INET6, text, &in6->sin6_addr) == 1);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        out.length = sizeof(sockaddr_in6);
    }
    return out;
}

}  // namespace

TEST_CASE("backend key: equal keys hash alike, any differing part tells keys apart",
          "[http][pool]") {
    const daemon::BackendKeyHash hash;
    const int context_a = 0;
    const int context_b = 0;
    const daemon::BackendKey plain{.address = backend_key_address("198.18.1.1", 8080)};
    daemon::BackendKey same = plain;
    // Storage bytes past the IPv4 address name nothing.
    std::memset(reinterpret_cast<sockaddr_in*>(&same.address.storage)->sin_zero, 0xaa, 8);
    CHECK(plain == same);
    CHECK(hash(plain) == hash(same));

    const daemon::BackendKey other_port{.address = backend_key_address("198.18.1.1", 8081)};
    const daemon::BackendKey other_host{.address = backend_key_address("198.18.1.2", 8080)};
    const daemon::BackendKey v6{.address = backend_key_address("2001:db8::1", 8080)};
    CHECK_FALSE(plain == other_port);
    CHECK_FALSE(plain == other_host);
    CHECK_FALSE(plain == v6);

    // An https:// backend: the context and the name the session was verified for count.
    const daemon::BackendKey tls{
        .address = plain.address, .tls_context = &context_a, .tls_name = "a.example.com"};
    daemon::BackendKey tls_same = tls;
    CHECK(tls == tls_same);
    CHECK(hash(tls) == hash(tls_same));
    CHECK_FALSE(tls == plain);
    tls_same.tls_context = &context_b;  // a reload's new context
    CHECK_FALSE(tls == tls_same);
    tls_same.tls_context = &context_a;
    tls_same.tls_name = "b.example.com";
    CHECK_FALSE(tls == tls_same);
}

}  // namespace splicer::test
