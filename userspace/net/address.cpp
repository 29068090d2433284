#include "net/address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <array>
#include <charconv>
#include <cstring>
#include <memory>

namespace splicer::net {

Result<SocketAddress> resolve(const config::Endpoint& endpoint) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(endpoint.port);
    const int rc = ::getaddrinfo(endpoint.host.c_str(), port.c_str(), &hints, &found);
    if (rc != 0) {
        return Error{"resolving " + config::to_string(endpoint) + ": " + gai_strerror(rc)};
    }
    const std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owner(found, &freeaddrinfo);
    if (found->ai_addrlen > sizeof(SocketAddressStorage)) {
        return Error{"resolving " + config::to_string(endpoint) + ": not an IPv4 or IPv6 address"};
    }
    SocketAddress address;
    std::memcpy(&address.storage, found->ai_addr, found->ai_addrlen);
    address.length = found->ai_addrlen;
    return address;
}

AddressParts parts_of(const SocketAddress& address) {
    AddressParts parts;
    if (address.family() == AF_INET) {
        parts.size = 4;
        parts.port = ntohs(address.storage.v4.sin_port);
        std::memcpy(parts.bytes.data(), &address.storage.v4.sin_addr, 4);
    } else if (address.family() == AF_INET6) {
        parts.size = 16;
        parts.port = ntohs(address.storage.v6.sin6_port);
        std::memcpy(parts.bytes.data(), &address.storage.v6.sin6_addr, 16);
    }
    return parts;
}

std::optional<SocketAddress> address_from(std::span<const std::uint8_t> bytes, std::uint16_t port) {
    SocketAddress address;
    if (bytes.size() == 4) {
        address.storage.v4.sin_family = AF_INET;
        address.storage.v4.sin_port = htons(port);
        std::memcpy(&address.storage.v4.sin_addr, bytes.data(), 4);
        address.length = sizeof(sockaddr_in);
        return address;
    }
    if (bytes.size() == 16) {
        address.storage.v6.sin6_family = AF_INET6;
        address.storage.v6.sin6_port = htons(port);
        std::memcpy(&address.storage.v6.sin6_addr, bytes.data(), 16);
        address.length = sizeof(sockaddr_in6);
        return address;
    }
    return std::nullopt;
}

namespace {

// "198.18.0.1" written at `out` (room for 15 bytes); returns the end. Not inet_ntop: glibc
// formats IPv4 with sprintf, and the port 80 proxy formats two or three addresses per
// request (X-Forwarded-For, the access line), which showed in its profile.
char* write_ipv4(char* out, const in_addr& address) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(&address.s_addr);
    for (int i = 0; i < 4; ++i) {
        if (i > 0) {
            *out++ = '.';
        }
        out = std::to_chars(out, out + 3, static_cast<unsigned>(bytes[i])).ptr;
    }
    return out;
}

}  // namespace

std::string ip_to_string(const SocketAddress& address) {
    std::array<char, INET6_ADDRSTRLEN> text{};
    if (address.family() == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
        ::inet_ntop(AF_INET6, &in6->sin6_addr, text.data(), text.size());
        return text.data();
    }
    if (address.family() == AF_INET) {
        const auto* in4 = reinterpret_cast<const sockaddr_in*>(&address.storage);
        return {text.data(), write_ipv4(text.data(), in4->sin_addr)};
    }
    return "unknown";
}

std::string to_string(const SocketAddress& address) {
    if (address.family() == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
        return "[" + ip_to_string(address) + "]:" + std::to_string(ntohs(in6->sin6_port));
    }
    if (address.family() == AF_INET) {
        const auto* in4 = reinterpret_cast<const sockaddr_in*>(&address.storage);
        std::array<char, 22> text{};  // "255.255.255.255:65535"
        char* end = write_ipv4(text.data(), in4->sin_addr);
        *end++ = ':';
        end = std::to_chars(end, text.data() + text.size(), ntohs(in4->sin_port)).ptr;
        return {text.data(), end};
    }
    return "unknown";
}

namespace {

// `family` ('4' or '6') then `bytes` with every bit past the first `prefix_bits` cleared.
std::string masked_key(char family, const unsigned char* bytes, std::size_t length,
                       std::uint32_t prefix_bits) {
    std::string key(1, family);
    for (std::size_t i = 0; i < length; ++i) {
        const std::size_t bit = i * 8;
        unsigned char byte = bytes[i];
        if (bit >= prefix_bits) {
            byte = 0;
        } else if (prefix_bits - bit < 8) {
            byte = static_cast<unsigned char>(byte & (0xffU << (8 - (prefix_bits - bit))));
        }
        key += static_cast<char>(byte);
    }
    return key;
}

}  // namespace

std::string host_key(const SocketAddress& address, ClientPrefix prefix) {
    if (address.family() == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
        const unsigned char* bytes = in6->sin6_addr.s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            return masked_key('4', bytes + 12, 4, prefix.ipv4);
        }
        return masked_key('6', bytes, 16, prefix.ipv6);
    }
    if (address.family() == AF_INET) {
        const auto* in4 = reinterpret_cast<const sockaddr_in*>(&address.storage);
        return masked_key('4', reinterpret_cast<const unsigned char*>(&in4->sin_addr), 4,
                          prefix.ipv4);
    }
    return "?";
}

}  // namespace splicer::net
