// net/proxy_header: the PROXY protocol header written to backends, byte for byte against
// HAProxy's doc/proxy-protocol.txt (v1 lines, v2 binary headers with ALPN and AUTHORITY TLVs).

#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <string>

#include "net/proxy_header.h"
#include "support/net_address.h"

namespace {

using splicer::net::ProxyVersion;
using splicer::net::SocketAddress;
using splicer::test::address_of;

std::string hex(const std::string& bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (const char c : bytes) {
        const auto byte = static_cast<unsigned char>(c);
        out += kDigits[byte >> 4];
        out += kDigits[byte & 0xf];
    }
    return out;
}

std::string encode(ProxyVersion version, const std::string& source_ip, std::uint16_t source_port,
                   const std::string& destination_ip, std::uint16_t destination_port,
                   const splicer::net::ProxyTlvs& tlvs = {}) {
    auto header =
        splicer::net::encode_proxy_header(version, address_of(source_ip, source_port),
                                          address_of(destination_ip, destination_port), tlvs);
    INFO((header ? std::string() : header.error().message));
    REQUIRE(header);
    return header.value();
}

// The v2 fixed part: signature, version 2 / PROXY, family, length.
const std::string kSignature = "0d0a0d0a000d0a515549540a";

}  // namespace

TEST_CASE("proxy header v1: TCP4, TCP6 and IPv4-mapped pairs", "[proxy]") {
    const auto row =
        GENERATE(table<std::string, std::uint16_t, std::string, std::uint16_t, std::string>({
            {"192.0.2.10", 56324, "198.51.100.1", 443,
             "PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n"},
            {"127.0.0.1", 1, "127.0.0.1", 65535, "PROXY TCP4 127.0.0.1 127.0.0.1 1 65535\r\n"},
            {"2001:db8::1", 40000, "2001:db8::2", 443,
             "PROXY TCP6 2001:db8::1 2001:db8::2 40000 443\r\n"},
            {"::1", 5, "::1", 80, "PROXY TCP6 ::1 ::1 5 80\r\n"},
            // A dual-stack listener reports an IPv4 client as ::ffff:a.b.c.d: sent as TCP4.
            {"::ffff:192.0.2.10", 56324, "::ffff:198.51.100.1", 443,
             "PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n"},
            // A mixed pair (not made by a listener, but encodable): TCP6, the IPv4 end mapped.
            {"192.0.2.10", 1000, "2001:db8::2", 443,
             "PROXY TCP6 ::ffff:192.0.2.10 2001:db8::2 1000 443\r\n"},
            // The longest TCP6 line, 104 bytes (the spec's 107 is for "UNKNOWN").
            {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535,
             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535,
             "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe "
             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe "
             "65535 65535\r\n"},
        }));
    const auto& [source, source_port, destination, destination_port, expected] = row;
    CAPTURE(source, destination);
    // v1 carries no TLVs: ALPN and SNI are left out.
    const std::string line = encode(ProxyVersion::v1, source, source_port, destination,
                                    destination_port, {.alpn = "h2", .authority = "a.example"});
    CHECK(line == expected);
    CHECK(line.size() <= splicer::net::kMaxProxyV1Bytes);
}

TEST_CASE("proxy header v2: addresses, ports and TLVs byte for byte", "[proxy]") {
    const auto row =
        GENERATE(table<std::string, std::string, std::string, std::string, std::string>({
            // source, destination, alpn, authority, expected hex after the signature
            {"192.0.2.10", "198.51.100.1", "", "",
             "2111000c"
             "c000020a"
             "c6336401"
             "dc04"
             "01bb"},
            {"::ffff:192.0.2.10", "::ffff:198.51.100.1", "", "",
             "2111000c"
             "c000020a"
             "c6336401"
             "dc04"
             "01bb"},
            {"2001:db8::1", "::1", "", "",
             "21210024"
             "20010db8000000000000000000000001"
             "00000000000000000000000000000001"
             "dc04"
             "01bb"},
            {"192.0.2.10", "198.51.100.1", "h2", "",
             "21110011"
             "c000020a"
             "c6336401"
             "dc04"
             "01bb"
             "010002"
             "6832"},
            {"192.0.2.10", "198.51.100.1", "", "chat.example.com",
             "2111001f"
             "c000020a"
             "c6336401"
             "dc04"
             "01bb"
             "020010"
             "636861742e6578616d706c652e636f6d"},
            {"2001:db8::1", "::1", "xmpp-client", "chat.example.com",
             "21210045"
             "20010db8000000000000000000000001"
             "00000000000000000000000000000001"
             "dc04"
             "01bb"
             "01000b"
             "786d70702d636c69656e74"
             "020010"
             "636861742e6578616d706c652e636f6d"},
            // mixed pair: IPv6, the IPv4 end mapped
            {"192.0.2.10", "2001:db8::2", "", "",
             "21210024"
             "00000000000000000000ffffc000020a"
             "20010db8000000000000000000000002"
             "dc04"
             "01bb"},
        }));
    const auto& [source, destination, alpn, authority, expected] = row;
    CAPTURE(source, destination, alpn, authority);
    const std::string header = encode(ProxyVersion::v2, source, 56324, destination, 443,
                                      {.alpn = alpn, .authority = authority});
    CHECK(hex(header) == kSignature + expected);
}

TEST_CASE("proxy header v2: the longest ALPN and host name fit, one byte more is refused",
          "[proxy]") {
    const std::string alpn(255, 'a');
    const std::string authority = std::string(63, 'x') + "." + std::string(63, 'y') + "." +
                                  std::string(63, 'z') + "." + std::string(63, 'w');
    REQUIRE(authority.size() == 255);
    const std::string header = encode(ProxyVersion::v2, "2001:db8::1", 1, "2001:db8::2", 2,
                                      {.alpn = alpn, .authority = authority});
    CHECK(header.size() == splicer::net::kMaxProxyV2Bytes);
    CHECK(header.size() == 568);
    // length field: everything after the 16-byte fixed part
    CHECK(hex(header.substr(12, 4)) == "21210228");
    CHECK(hex(header.substr(52, 3)) == "0100ff");
    CHECK(header.substr(55, 255) == alpn);
    CHECK(hex(header.substr(310, 3)) == "0200ff");
    CHECK(header.substr(313) == authority);

    const auto too_long = splicer::net::encode_proxy_header(
        ProxyVersion::v2, address_of("192.0.2.1", 1), address_of("192.0.2.2", 2),
        {.authority = authority + "q"});
    REQUIRE_FALSE(too_long);
    CHECK(too_long.error().message == "PROXY header: a TLV value over 255 bytes");
}

TEST_CASE("proxy header: an address that is not IPv4 or IPv6 is refused", "[proxy]") {
    SocketAddress unix_address;
    unix_address.storage.any.sa_family = AF_UNIX;
    for (const ProxyVersion version : {ProxyVersion::v1, ProxyVersion::v2}) {
        const auto header =
            splicer::net::encode_proxy_header(version, unix_address, address_of("127.0.0.1", 443));
        REQUIRE_FALSE(header);
        CHECK(header.error().message == "PROXY header: only IPv4 and IPv6 addresses can be sent");
    }
}
