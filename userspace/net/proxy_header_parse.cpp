// parse_proxy_header(): PROXY protocol v1 lines and v2 headers (proxy_header_parse.h).

#include "net/proxy_header_parse.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>

namespace splicer::net {
namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
// The v2 signature: "\r\n\r\n\0\r\nQUIT\n" (proxy-protocol.txt, 2.2).
constexpr std::array<unsigned char, 12> kV2Signature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                        0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::size_t kV2FixedBytes = 16;

ProxyParseResult need_more() { return {}; }

ProxyParseResult invalid(std::string_view reason) {
    return {.status = ProxyParseStatus::invalid, .reason = reason, .header = {}};
}

ProxyParseResult parsed(const ReceivedProxyHeader& header) {
    return {.status = ProxyParseStatus::parsed, .reason = {}, .header = header};
}

unsigned char byte_at(std::span<const std::byte> bytes, std::size_t i) {
    return static_cast<unsigned char>(bytes[i]);
}

// Whether `bytes` (so far) agree with `expected` on their common length.
bool agrees(std::span<const std::byte> bytes, const unsigned char* expected, std::size_t size) {
    const std::size_t common = std::min(bytes.size(), size);
    return std::memcmp(bytes.data(), expected, common) == 0;
}

// A decimal port, 0..65535, without sign, spaces or leading zeros (the spec's "decimal
// integer ... leading zeroes are not permitted"): "080" is refused, as HAProxy refuses it.
bool parse_port(std::string_view text, std::uint16_t& port) {
    if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0')) {
        return false;
    }
    unsigned value = 0;
    for (const char c : text) {
        if (c < '0' || c > '9') {
            return false;
        }
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value > 65535) {
        return false;
    }
    port = static_cast<std::uint16_t>(value);
    return true;
}

// One address of a TCP4 / TCP6 line. inet_pton is strict: dotted quad with no leading zeros
// for AF_INET, no brackets or zone for AF_INET6.
bool parse_address(int family, std::string_view text, SocketAddress& address) {
    if (text.empty() || text.size() >= INET6_ADDRSTRLEN) {
        return false;
    }
    const std::string copy(text);
    address = SocketAddress{};
    if (family == AF_INET) {
        auto* in4 = reinterpret_cast<sockaddr_in*>(&address.storage);
        in4->sin_family = AF_INET;
        address.length = sizeof(sockaddr_in);
        return ::inet_pton(AF_INET, copy.c_str(), &in4->sin_addr) == 1;
    }
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
    in6->sin6_family = AF_INET6;
    address.length = sizeof(sockaddr_in6);
    return ::inet_pton(AF_INET6, copy.c_str(), &in6->sin6_addr) == 1;
}

void set_port(SocketAddress& address, std::uint16_t port) {
    if (address.family() == AF_INET) {
        reinterpret_cast<sockaddr_in*>(&address.storage)->sin_port = htons(port);
    } else {
        reinterpret_cast<sockaddr_in6*>(&address.storage)->sin6_port = htons(port);
    }
}

// Splits off the text up to the next single space; false if there is none.
bool next_field(std::string_view& rest, std::string_view& field) {
    const std::size_t space = rest.find(' ');
    if (space == std::string_view::npos) {
        return false;
    }
    field = rest.substr(0, space);
    rest.remove_prefix(space + 1);
    return true;
}

// "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n" (the CRLF already cut off).
ProxyParseResult parse_v1_line(std::string_view line, std::size_t length) {
    std::string_view rest = line.substr(kV1Prefix.size());
    ReceivedProxyHeader header;
    header.length = length;
    if (rest.starts_with("UNKNOWN")) {
        // "the receiver must ignore anything presented before the CRLF is found"
        if (rest.size() > 7 && rest[7] != ' ') {
            return invalid("v1: unknown protocol");
        }
        return parsed(header);
    }
    std::string_view protocol;
    std::string_view source;
    std::string_view destination;
    std::string_view source_port;
    if (!next_field(rest, protocol) || !next_field(rest, source) ||
        !next_field(rest, destination) || !next_field(rest, source_port)) {
        return invalid("v1: missing field");
    }
    const std::string_view destination_port = rest;
    int family = 0;
    if (protocol == "TCP4") {
        family = AF_INET;
    } else if (protocol == "TCP6") {
        family = AF_INET6;
    } else {
        return invalid("v1: unknown protocol");
    }
    std::uint16_t from_port = 0;
    std::uint16_t to_port = 0;
    if (!parse_address(family, source, header.source) ||
        !parse_address(family, destination, header.destination)) {
        return invalid("v1: bad address");
    }
    if (!parse_port(source_port, from_port) || !parse_port(destination_port, to_port)) {
        return invalid("v1: bad port");
    }
    set_port(header.source, from_port);
    set_port(header.destination, to_port);
    header.local = false;
    return parsed(header);
}

ProxyParseResult parse_v1(std::span<const std::byte> bytes) {
    const std::string_view text(reinterpret_cast<const char*>(bytes.data()),
                                std::min(bytes.size(), kMaxProxyV1Bytes));
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '\r') {
            if (i + 1 == text.size()) {
                return text.size() == kMaxProxyV1Bytes ? invalid("v1: line too long")
                                                       : need_more();
            }
            if (text[i + 1] != '\n') {
                return invalid("v1: CR without LF");
            }
            return parse_v1_line(text.substr(0, i), i + 2);
        }
        // Printable US-ASCII only: a NUL, LF or 8-bit byte in the line is no header.
        if (c < 0x20 || c > 0x7e) {
            return invalid("v1: bad character");
        }
    }
    return text.size() == kMaxProxyV1Bytes ? invalid("v1: line too long") : need_more();
}

std::uint16_t u16_at(std::span<const std::byte> bytes, std::size_t i) {
    return static_cast<std::uint16_t>((byte_at(bytes, i) << 8) | byte_at(bytes, i + 1));
}

void read_v2_addresses(std::span<const std::byte> payload, int family,
                       ReceivedProxyHeader& header) {
    const std::size_t size = family == AF_INET ? 4 : 16;
    for (SocketAddress* address : {&header.source, &header.destination}) {
        *address = SocketAddress{};
    }
    const std::uint16_t from_port = u16_at(payload, 2 * size);
    const std::uint16_t to_port = u16_at(payload, 2 * size + 2);
    if (family == AF_INET) {
        auto* from = reinterpret_cast<sockaddr_in*>(&header.source.storage);
        auto* to = reinterpret_cast<sockaddr_in*>(&header.destination.storage);
        from->sin_family = to->sin_family = AF_INET;
        std::memcpy(&from->sin_addr, payload.data(), size);
        std::memcpy(&to->sin_addr, payload.data() + size, size);
        header.source.length = header.destination.length = sizeof(sockaddr_in);
    } else {
        auto* from = reinterpret_cast<sockaddr_in6*>(&header.source.storage);
        auto* to = reinterpret_cast<sockaddr_in6*>(&header.destination.storage);
        from->sin6_family = to->sin6_family = AF_INET6;
        std::memcpy(&from->sin6_addr, payload.data(), size);
        std::memcpy(&to->sin6_addr, payload.data() + size, size);
        header.source.length = header.destination.length = sizeof(sockaddr_in6);
    }
    set_port(header.source, from_port);
    set_port(header.destination, to_port);
}

// TLVs (type, 16-bit length, value) fill the payload past the addresses; splicer uses none of
// them but checks that each one lies inside the payload, as HAProxy does.
bool tlvs_fit(std::span<const std::byte> tlvs) {
    std::size_t at = 0;
    while (at < tlvs.size()) {
        if (tlvs.size() - at < 3) {
            return false;
        }
        const std::size_t value = u16_at(tlvs, at + 1);
        if (tlvs.size() - at - 3 < value) {
            return false;
        }
        at += 3 + value;
    }
    return true;
}

ProxyParseResult parse_v2(std::span<const std::byte> bytes) {
    if (bytes.size() < kV2FixedBytes) {
        return need_more();
    }
    const unsigned char version_command = byte_at(bytes, 12);
    const unsigned char family_transport = byte_at(bytes, 13);
    const std::size_t payload_size = u16_at(bytes, 14);
    if ((version_command >> 4) != 2) {
        return invalid("v2: version not 2");
    }
    const unsigned command = version_command & 0x0f;
    if (command > 1) {
        return invalid("v2: unknown command");
    }
    const unsigned family = family_transport >> 4;
    const unsigned transport = family_transport & 0x0f;
    if (family > 3 || transport > 2) {
        return invalid("v2: unknown family or transport");
    }
    if (payload_size > kMaxReceivedProxyV2Payload) {
        return invalid("v2: header too long");
    }
    if (bytes.size() < kV2FixedBytes + payload_size) {
        return need_more();
    }
    ReceivedProxyHeader header;
    header.version = ProxyVersion::v2;
    header.length = kV2FixedBytes + payload_size;
    const std::span<const std::byte> payload = bytes.subspan(kV2FixedBytes, payload_size);
    // Address block sizes by family (2.2): INET 12, INET6 36, UNIX 216, UNSPEC none.
    static constexpr std::array<std::size_t, 4> kAddressBytes = {0, 12, 36, 216};
    const std::size_t addresses = kAddressBytes[family];
    if (payload_size < addresses) {
        return invalid("v2: addresses past the header's length");
    }
    if (!tlvs_fit(payload.subspan(addresses))) {
        return invalid("v2: TLV past the header's length");
    }
    // LOCAL: the balancer speaking for itself ("the receiver must accept this connection as
    // valid and must use the real connection endpoints and discard the protocol block
    // including the family"). UNSPEC, AF_UNIX and DGRAM: no TCP/IP client to stand for.
    if (command == 0 || transport != 1 || (family != 1 && family != 2)) {
        return parsed(header);
    }
    read_v2_addresses(payload, family == 1 ? AF_INET : AF_INET6, header);
    header.local = false;
    return parsed(header);
}

}  // namespace

ProxyParseResult parse_proxy_header(std::span<const std::byte> bytes) {
    if (bytes.empty()) {
        return need_more();
    }
    if (agrees(bytes, reinterpret_cast<const unsigned char*>(kV1Prefix.data()),
               kV1Prefix.size())) {
        return bytes.size() < kV1Prefix.size() ? need_more() : parse_v1(bytes);
    }
    if (agrees(bytes, kV2Signature.data(), kV2Signature.size())) {
        return parse_v2(bytes);
    }
    return invalid(kNotProxyHeader);
}

}  // namespace splicer::net
