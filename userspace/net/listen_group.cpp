#include "net/listen_group.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>

#include "net/sockets.h"

namespace splicer::net {
namespace {

bool port_zero(const SocketAddress& address) {
    if (address.family() == AF_INET) {
        return reinterpret_cast<const sockaddr_in*>(&address.storage)->sin_port == 0;
    }
    if (address.family() == AF_INET6) {
        return reinterpret_cast<const sockaddr_in6*>(&address.storage)->sin6_port == 0;
    }
    return false;
}

// Fails as a plain listener's bind would while another socket listens on `address`
// (SO_REUSEADDR passes connections in TIME_WAIT, as listen_on's does).
Result<void> check_port_free(const SocketAddress& address) {
    UniqueFd probe(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!probe) {
        return errno_error("socket");
    }
    const int on = 1;
    ::setsockopt(probe.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (address.family() == AF_INET6) {
        ::setsockopt(probe.get(), IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    }
    if (::bind(probe.get(), address.get(), address.length) != 0) {
        return errno_error("bind " + to_string(address));
    }
    return {};
}

}  // namespace

Result<std::vector<UniqueFd>> listen_group(const SocketAddress& address, int backlog,
                                           std::uint32_t count) {
    std::vector<UniqueFd> group;
    if (count <= 1) {
        auto fd = listen_on(address, backlog);
        if (!fd) {
            return fd.error();
        }
        group.push_back(std::move(fd).value());
        return group;
    }
    if (!port_zero(address)) {
        if (auto free = check_port_free(address); !free) {
            return free.error();
        }
    }
    SocketAddress target = address;
    for (std::uint32_t i = 0; i < count; ++i) {
        auto fd = listen_on(target, backlog, true);
        if (!fd) {
            return fd.error();
        }
        if (i == 0) {
            target = local_address(fd->get());  // port 0: the rest join the port it got
        }
        group.push_back(std::move(fd).value());
    }
    return group;
}

}  // namespace splicer::net
