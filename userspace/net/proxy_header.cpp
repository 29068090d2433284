// encode_proxy_header(): PROXY protocol v1 lines and v2 headers (proxy_header.h).

#include "net/proxy_header.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <cstring>

namespace splicer::net {
namespace {

// The v2 signature: "\r\n\r\n\0\r\nQUIT\n" (proxy-protocol.txt, 2.2).
constexpr std::array<unsigned char, 12> kV2Signature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                        0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr unsigned char kV2VersionProxy = 0x21;  // version 2, command PROXY
constexpr unsigned char kV2Tcp4 = 0x11;          // AF_INET, STREAM
constexpr unsigned char kV2Tcp6 = 0x21;          // AF_INET6, STREAM

// One end of the connection as the header writes it: 4 or 16 address bytes (network order)
// and the port (host order).
struct End {
    std::array<unsigned char, 16> address{};
    std::size_t length = 0;  // 4 or 16
    std::uint16_t port = 0;
};

bool is_v4_mapped(const in6_addr& address) {
    static constexpr std::array<unsigned char, 12> kPrefix = {0, 0, 0, 0, 0,    0,
                                                              0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(address.s6_addr, kPrefix.data(), kPrefix.size()) == 0;
}

// Reads one end; IPv4-mapped IPv6 addresses come out as IPv4. False for another family.
bool read_end(const SocketAddress& address, End& end) {
    if (address.family() == AF_INET) {
        const auto* in4 = reinterpret_cast<const sockaddr_in*>(&address.storage);
        std::memcpy(end.address.data(), &in4->sin_addr, 4);
        end.length = 4;
        end.port = ntohs(in4->sin_port);
        return true;
    }
    if (address.family() == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
        end.port = ntohs(in6->sin6_port);
        if (is_v4_mapped(in6->sin6_addr)) {
            std::memcpy(end.address.data(), in6->sin6_addr.s6_addr + 12, 4);
            end.length = 4;
        } else {
            std::memcpy(end.address.data(), in6->sin6_addr.s6_addr, 16);
            end.length = 16;
        }
        return true;
    }
    return false;
}

// A mixed pair is written as IPv6: the IPv4 end as ::ffff:a.b.c.d.
void widen_to_v6(End& end) {
    if (end.length == 16) {
        return;
    }
    std::array<unsigned char, 16> wide{};
    wide[10] = 0xff;
    wide[11] = 0xff;
    std::memcpy(wide.data() + 12, end.address.data(), 4);
    end.address = wide;
    end.length = 16;
}

std::string text_of(const End& end) {
    std::array<char, INET6_ADDRSTRLEN> text{};
    ::inet_ntop(end.length == 4 ? AF_INET : AF_INET6, end.address.data(), text.data(),
                static_cast<socklen_t>(text.size()));
    return text.data();
}

void append_u16(std::string& out, std::size_t value) {
    out += static_cast<char>((value >> 8) & 0xff);
    out += static_cast<char>(value & 0xff);
}

void append_address(std::string& out, const End& end) {
    out.append(reinterpret_cast<const char*>(end.address.data()), end.length);
}

void append_tlv(std::string& out, std::uint8_t type, std::string_view value) {
    if (value.empty()) {
        return;
    }
    out += static_cast<char>(type);
    append_u16(out, value.size());
    out += value;
}

std::string encode_v1(const End& source, const End& destination) {
    return std::string("PROXY ") + (source.length == 4 ? "TCP4 " : "TCP6 ") + text_of(source) +
           " " + text_of(destination) + " " + std::to_string(source.port) + " " +
           std::to_string(destination.port) + "\r\n";
}

std::string encode_v2(const End& source, const End& destination, const ProxyTlvs& tlvs) {
    std::string out(reinterpret_cast<const char*>(kV2Signature.data()), kV2Signature.size());
    out += static_cast<char>(kV2VersionProxy);
    out += static_cast<char>(source.length == 4 ? kV2Tcp4 : kV2Tcp6);
    const std::size_t length_at = out.size();
    append_u16(out, 0);  // filled in below
    append_address(out, source);
    append_address(out, destination);
    append_u16(out, source.port);
    append_u16(out, destination.port);
    append_tlv(out, kPp2TypeAlpn, tlvs.alpn);
    append_tlv(out, kPp2TypeAuthority, tlvs.authority);
    const std::size_t length = out.size() - (length_at + 2);
    out[length_at] = static_cast<char>((length >> 8) & 0xff);
    out[length_at + 1] = static_cast<char>(length & 0xff);
    return out;
}

}  // namespace

Result<std::string> encode_proxy_header(ProxyVersion version, const SocketAddress& source,
                                        const SocketAddress& destination, const ProxyTlvs& tlvs) {
    End from;
    End to;
    if (!read_end(source, from) || !read_end(destination, to)) {
        return Error{"PROXY header: only IPv4 and IPv6 addresses can be sent"};
    }
    if (from.length != to.length) {
        widen_to_v6(from);
        widen_to_v6(to);
    }
    if (version == ProxyVersion::v1) {
        return encode_v1(from, to);
    }
    if (tlvs.alpn.size() > kMaxProxyTlvValue || tlvs.authority.size() > kMaxProxyTlvValue) {
        return Error{"PROXY header: a TLV value over " + std::to_string(kMaxProxyTlvValue) +
                     " bytes"};
    }
    return encode_v2(from, to, tlvs);
}

}  // namespace splicer::net
