// net/proxy_header_parse: the PROXY header a balancer sends, read from bytes. The spec's
// examples (HAProxy's doc/proxy-protocol.txt), hostile lines and headers, every prefix of a
// valid header (need_more until its last byte, whatever TCP split), and a round trip through
// splicer's own encoder (net/proxy_header.h).

#include <catch2/catch.hpp>
#include <cstdint>
#include <span>
#include <string>

#include "net/proxy_header.h"
#include "net/proxy_header_parse.h"
#include "support/net_address.h"

namespace {

using splicer::net::ProxyParseResult;
using splicer::net::ProxyParseStatus;
using splicer::net::ProxyVersion;
using splicer::net::SocketAddress;
using splicer::test::address_of;

ProxyParseResult parse(const std::string& bytes) {
    return splicer::net::parse_proxy_header(
        std::as_bytes(std::span<const char>(bytes.data(), bytes.size())));
}

std::string unhex(const std::string& hex) {
    std::string out;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
        out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
    }
    return out;
}

const std::string kSignatureHex = "0d0a0d0a000d0a515549540a";

// Every proper prefix needs more; the whole gives `expected` and so does the whole with
// bytes behind it (a header never depends on what follows it).
void check_prefixes(const std::string& header, ProxyParseStatus expected) {
    for (std::size_t length = 0; length < header.size(); ++length) {
        CAPTURE(length);
        const ProxyParseResult result = parse(header.substr(0, length));
        CAPTURE(result.reason);
        REQUIRE(result.status == ProxyParseStatus::need_more);
    }
    const ProxyParseResult whole = parse(header);
    CAPTURE(whole.reason);
    REQUIRE(whole.status == expected);
    const ProxyParseResult followed = parse(header + "\x16\x03\x01 GET / HTTP/1.1\r\n");
    REQUIRE(followed.status == expected);
    if (expected == ProxyParseStatus::parsed) {
        REQUIRE(whole.header.length == header.size());
        REQUIRE(followed.header.length == header.size());
    }
}

}  // namespace

TEST_CASE("PROXY v1 TCP4 and TCP6 lines give the client and the address it reached",
          "[proxy_header_parse]") {
    const std::string line = "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n";
    check_prefixes(line, ProxyParseStatus::parsed);
    const ProxyParseResult v4 = parse(line);
    REQUIRE_FALSE(v4.header.local);
    REQUIRE(v4.header.version == ProxyVersion::v1);
    REQUIRE(splicer::net::to_string(v4.header.source) == "192.0.2.1:56324");
    REQUIRE(splicer::net::to_string(v4.header.destination) == "198.51.100.1:443");

    const std::string line6 = "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
    check_prefixes(line6, ProxyParseStatus::parsed);
    const ProxyParseResult v6 = parse(line6);
    REQUIRE(splicer::net::to_string(v6.header.source) == "[2001:db8::1]:65535");
    REQUIRE(splicer::net::to_string(v6.header.destination) == "[::1]:0");
}

TEST_CASE("PROXY v1 UNKNOWN keeps the connection's own addresses", "[proxy_header_parse]") {
    for (const std::string line :
         {"PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"}) {
        CAPTURE(line);
        check_prefixes(line, ProxyParseStatus::parsed);
        REQUIRE(parse(line).header.local);
    }
    // The spec's worst case: 107 bytes exactly.
    const std::string longest =
        "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    REQUIRE(longest.size() == 107);
    check_prefixes(longest, ProxyParseStatus::parsed);
}

TEST_CASE("Hostile PROXY v1 lines are invalid, never need more past 107 bytes",
          "[proxy_header_parse]") {
    const auto [line, reason] = GENERATE(table<std::string, std::string>({
        {"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\n", "v1: bad character"},
        {"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\rX", "v1: CR without LF"},
        {"PROXY TCP5 192.0.2.1 198.51.100.1 56324 443\r\n", "v1: unknown protocol"},
        {"PROXY UNKNOWNX\r\n", "v1: unknown protocol"},
        {"PROXY TCP4 192.0.2.1 198.51.100.1 56324\r\n", "v1: missing field"},
        {"PROXY TCP4  192.0.2.1 198.51.100.1 56324 443\r\n", "v1: bad address"},
        {"PROXY TCP4 192.0.2.01 198.51.100.1 56324 443\r\n", "v1: bad address"},
        {"PROXY TCP4 ::1 198.51.100.1 56324 443\r\n", "v1: bad address"},
        {"PROXY TCP6 192.0.2.1 ::1 56324 443\r\n", "v1: bad address"},
        {"PROXY TCP4 192.0.2.1 198.51.100.1 056324 443\r\n", "v1: bad port"},
        {"PROXY TCP4 192.0.2.1 198.51.100.1 65536 443\r\n", "v1: bad port"},
        {"PROXY TCP4 192.0.2.1 198.51.100.1 +80 443\r\n", "v1: bad port"},
        {"PROXY TCP4 192.0.2.1 198.51.100.1 80 443 \r\n", "v1: bad port"},
        {"PROXY TCP4 192.0.2.1 198.51.100.1 80 -1\r\n", "v1: bad port"},
        {std::string("PROXY TCP4 192.0.2.1") + '\0' + " 198.51.100.1 80 443\r\n",
         "v1: bad character"},
        {"PROXY " + std::string(101, 'A'), "v1: line too long"},
        {"PROXY " + std::string(100, 'A') + "\r", "v1: line too long"},
        {"proxy TCP4 192.0.2.1 198.51.100.1 56324 443\r\n", std::string(splicer::net::kNotProxyHeader)},
        {"\x16\x03\x01\x02\x00\x01", std::string(splicer::net::kNotProxyHeader)},
        {"GET / HTTP/1.1\r\n", std::string(splicer::net::kNotProxyHeader)},
    }));
    CAPTURE(line);
    const ProxyParseResult result = parse(line);
    REQUIRE(result.status == ProxyParseStatus::invalid);
    REQUIRE(result.reason == reason);
}

TEST_CASE("PROXY v2 headers: the spec's layout for TCP over IPv4 and IPv6, TLVs skipped",
          "[proxy_header_parse]") {
    // PROXY, AF_INET/STREAM, 12 address bytes + one 5-byte TLV (type 0x04 NOOP, 2 bytes).
    const std::string v4 = unhex(kSignatureHex + "2111" + "0011" + "c0000201" + "c6336401" +
                                 "dc04" + "01bb" + "040002abcd");
    check_prefixes(v4, ProxyParseStatus::parsed);
    const ProxyParseResult parsed4 = parse(v4);
    REQUIRE_FALSE(parsed4.header.local);
    REQUIRE(parsed4.header.version == ProxyVersion::v2);
    REQUIRE(splicer::net::to_string(parsed4.header.source) == "192.0.2.1:56324");
    REQUIRE(splicer::net::to_string(parsed4.header.destination) == "198.51.100.1:443");

    const std::string v6 =
        unhex(kSignatureHex + "2121" + "0024" + "20010db8000000000000000000000001" +
              "00000000000000000000000000000001" + "1f90" + "0050");
    check_prefixes(v6, ProxyParseStatus::parsed);
    const ProxyParseResult parsed6 = parse(v6);
    REQUIRE(splicer::net::to_string(parsed6.header.source) == "[2001:db8::1]:8080");
    REQUIRE(splicer::net::to_string(parsed6.header.destination) == "[::1]:80");
}

TEST_CASE("PROXY v2 LOCAL, UNSPEC, AF_UNIX and DGRAM keep the connection's own addresses",
          "[proxy_header_parse]") {
    const std::string unix_block(216 * 2, '0');
    for (const std::string& hex : {
             kSignatureHex + "2000" + "0000",  // LOCAL, as health checks send it
             kSignatureHex + "2011" + "000c" + std::string(24, '0'),  // LOCAL with addresses
             kSignatureHex + "2100" + "0000",                         // PROXY, UNSPEC
             kSignatureHex + "2131" + "00d8" + unix_block,            // PROXY, AF_UNIX STREAM
             kSignatureHex + "2112" + "000c" + std::string(24, '0'),  // PROXY, AF_INET DGRAM
         }) {
        CAPTURE(hex);
        check_prefixes(unhex(hex), ProxyParseStatus::parsed);
        REQUIRE(parse(unhex(hex)).header.local);
    }
}

TEST_CASE("Hostile PROXY v2 headers are invalid", "[proxy_header_parse]") {
    const auto [hex, reason] = GENERATE(table<std::string, std::string>({
        {kSignatureHex + "1111" + "000c" + std::string(24, '0'), "v2: version not 2"},
        {kSignatureHex + "3111" + "000c" + std::string(24, '0'), "v2: version not 2"},
        {kSignatureHex + "2211" + "000c" + std::string(24, '0'), "v2: unknown command"},
        {kSignatureHex + "2141" + "000c" + std::string(24, '0'), "v2: unknown family or transport"},
        {kSignatureHex + "2113" + "000c" + std::string(24, '0'), "v2: unknown family or transport"},
        {kSignatureHex + "2111" + "0801", "v2: header too long"},
        {kSignatureHex + "2111" + "ffff", "v2: header too long"},
        {kSignatureHex + "2111" + "000b" + std::string(22, '0'),
         "v2: addresses past the header's length"},
        {kSignatureHex + "2121" + "000c" + std::string(24, '0'),
         "v2: addresses past the header's length"},
        {kSignatureHex + "2111" + "000e" + std::string(24, '0') + "04ff",
         "v2: TLV past the header's length"},
        {kSignatureHex + "2111" + "0010" + std::string(24, '0') + "040002ab",
         "v2: TLV past the header's length"},
        {"0d0a0d0a000d0a5155495451", std::string(splicer::net::kNotProxyHeader)},
    }));
    CAPTURE(hex);
    const ProxyParseResult result = parse(unhex(hex));
    REQUIRE(result.status == ProxyParseStatus::invalid);
    REQUIRE(result.reason == reason);
}

TEST_CASE("PROXY headers splicer encodes parse back to the same addresses",
          "[proxy_header_parse]") {
    const auto [source_ip, destination_ip, version] =
        GENERATE(table<std::string, std::string, ProxyVersion>({
            {"192.0.2.1", "198.51.100.1", ProxyVersion::v1},
            {"192.0.2.1", "198.51.100.1", ProxyVersion::v2},
            {"2001:db8::7", "::1", ProxyVersion::v1},
            {"2001:db8::7", "::1", ProxyVersion::v2},
        }));
    CAPTURE(source_ip, destination_ip, static_cast<int>(version));
    const SocketAddress source = address_of(source_ip, 40000);
    const SocketAddress destination = address_of(destination_ip, 443);
    const splicer::net::ProxyTlvs tlvs{.alpn = "h2", .authority = "example.com"};
    auto encoded = splicer::net::encode_proxy_header(version, source, destination, tlvs);
    REQUIRE(encoded);
    check_prefixes(encoded.value(), ProxyParseStatus::parsed);
    const ProxyParseResult result = parse(encoded.value());
    REQUIRE_FALSE(result.header.local);
    REQUIRE(splicer::net::to_string(result.header.source) == splicer::net::to_string(source));
    REQUIRE(splicer::net::to_string(result.header.destination) ==
            splicer::net::to_string(destination));
}
