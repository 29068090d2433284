// The address and byte-order helpers the PROXY header tests build their expectations with
// (support/net_address.h): a wrong helper would make those tests agree with a wrong header.

#include <netinet/in.h>

#include <catch2/catch.hpp>
#include <string>

#include "support/net_address.h"

using splicer::test::address_of;
using splicer::test::u16;

TEST_CASE("u16 writes the most significant byte first, as PROXY v2 fields are", "[support]") {
    const auto [value, bytes] = GENERATE(table<std::uint16_t, std::string>({
        {0x0000, std::string("\x00\x00", 2)},
        {0x01bb, std::string("\x01\xbb", 2)},  // 443
        {0x0050, std::string("\x00\x50", 2)},  // 80
        {0xff00, std::string("\xff\x00", 2)},
        {0xffff, std::string("\xff\xff", 2)},
    }));
    CAPTURE(value);
    CHECK(u16(value) == bytes);
}

TEST_CASE("address_of keeps the port in network byte order for either family", "[support]") {
    const auto v4 = address_of("198.18.0.1", 443);
    REQUIRE(v4.family() == AF_INET);
    CHECK(reinterpret_cast<const sockaddr_in*>(&v4.storage)->sin_port == htons(443));
    const auto v6 = address_of("2001:db8::1", 8443);
    REQUIRE(v6.family() == AF_INET6);
    CHECK(reinterpret_cast<const sockaddr_in6*>(&v6.storage)->sin6_port == htons(8443));
    CHECK_THROWS_AS(address_of("2001:db8::zz", 1), std::invalid_argument);
}
