// net::ip_to_string and net::to_string (net/address.h): the text of an address as the access
// log and X-Forwarded-For carry it, IPv4 written without inet_ntop, IPv6 by it.

#include <arpa/inet.h>
#include <netinet/in.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>

#include "net/address.h"

namespace splicer::test {
namespace {

net::SocketAddress text_test_address(const char* ip, std::uint16_t port) {
    net::SocketAddress out;
    auto* in4 = reinterpret_cast<sockaddr_in*>(&out.storage);
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
    if (::inet_pton(AF_INET, ip, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        out.length = sizeof(sockaddr_in);
    } else {
        REQUIRE(::inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        out.length = sizeof(sockaddr_in6);
    }
    return out;
}

}  // namespace

TEST_CASE("address text: IPv4 and IPv6 with and without the port, every octet width",
          "[net]") {
    const auto [ip, port, text, with_port] =
        GENERATE(table<const char*, std::uint16_t, const char*, const char*>({
            {"0.0.0.0", 0, "0.0.0.0", "0.0.0.0:0"},
            {"198.18.0.1", 80, "198.18.0.1", "198.18.0.1:80"},
            {"255.255.255.255", 65535, "255.255.255.255", "255.255.255.255:65535"},
            {"198.19.100.9", 8080, "198.19.100.9", "198.19.100.9:8080"},
            {"2001:db8::1", 443, "2001:db8::1", "[2001:db8::1]:443"},
            {"::ffff:198.18.0.1", 5, "::ffff:198.18.0.1", "[::ffff:198.18.0.1]:5"},
        }));
    const net::SocketAddress address = text_test_address(ip, port);
    CAPTURE(ip, port);
    CHECK(net::ip_to_string(address) == text);
    CHECK(net::to_string(address) == with_port);
}

}  // namespace splicer::test
