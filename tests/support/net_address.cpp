#include "support/net_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdexcept>

namespace splicer::test {

net::SocketAddress address_of(const std::string& ip, std::uint16_t port) {
    net::SocketAddress address;
    int parsed = 0;
    if (ip.find(':') == std::string::npos) {
        auto* in4 = reinterpret_cast<sockaddr_in*>(&address.storage);
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        parsed = ::inet_pton(AF_INET, ip.c_str(), &in4->sin_addr);
        address.length = sizeof(sockaddr_in);
    } else {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        parsed = ::inet_pton(AF_INET6, ip.c_str(), &in6->sin6_addr);
        address.length = sizeof(sockaddr_in6);
    }
    if (parsed != 1) {
        throw std::invalid_argument("address_of: not an IP literal: " + ip);
    }
    return address;
}

net::SocketAddress loopback_v4(std::uint16_t port) {
    return address_of("127.0.0.1", port);
}

std::string u16(std::uint16_t value) {
    return {static_cast<char>(value >> 8), static_cast<char>(value & 0xff)};
}

}  // namespace splicer::test
