#include "net/address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <array>
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
    SocketAddress address;
    std::memcpy(&address.storage, found->ai_addr, found->ai_addrlen);
    address.length = found->ai_addrlen;
    return address;
}

std::string ip_to_string(const SocketAddress& address) {
    std::array<char, INET6_ADDRSTRLEN> text{};
    if (address.family() == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
        ::inet_ntop(AF_INET6, &in6->sin6_addr, text.data(), text.size());
        return text.data();
    }
    if (address.family() == AF_INET) {
        const auto* in4 = reinterpret_cast<const sockaddr_in*>(&address.storage);
        ::inet_ntop(AF_INET, &in4->sin_addr, text.data(), text.size());
        return text.data();
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
        return ip_to_string(address) + ":" + std::to_string(ntohs(in4->sin_port));
    }
    return "unknown";
}

std::string host_key(const SocketAddress& address) {
    if (address.family() == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
        const auto* bytes = reinterpret_cast<const char*>(&in6->sin6_addr);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            return std::string(1, '4') + std::string(bytes + 12, 4);
        }
        return std::string(1, '6') + std::string(bytes, 16);
    }
    if (address.family() == AF_INET) {
        const auto* in4 = reinterpret_cast<const sockaddr_in*>(&address.storage);
        return std::string(1, '4') + std::string(reinterpret_cast<const char*>(&in4->sin_addr), 4);
    }
    return "?";
}

}  // namespace splicer::net
