#include "net/transparent_bind.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace splicer::net {

Result<void> bind_to_client(int fd, const SocketAddress& client) {
    const int family = client.family();
    if (family != AF_INET && family != AF_INET6) {
        return Error{"transparent: the client has no IP address"};
    }
    int domain = 0;
    socklen_t length = sizeof(domain);
    if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) != 0) {
        return errno_error("transparent: SO_DOMAIN");
    }
    if (domain != family) {
        // An IPv4 source cannot reach an IPv6 backend or the reverse (a v4-mapped source
        // on an IPv6 socket only reaches IPv4 destinations).
        return Error{std::string("transparent: the client is ") +
                     (family == AF_INET ? "IPv4" : "IPv6") + " and the backend " +
                     (domain == AF_INET ? "IPv4" : "IPv6") +
                     ": a transparent rule needs a backend of the client's family"};
    }
    const int on = 1;
    const int level = family == AF_INET ? SOL_IP : SOL_IPV6;
    const int option = family == AF_INET ? IP_TRANSPARENT : IPV6_TRANSPARENT;
    if (::setsockopt(fd, level, option, &on, sizeof(on)) != 0) {
        const int error = errno;
        return errno_error(error == EPERM ? "transparent: IP_TRANSPARENT (CAP_NET_RAW is not held)"
                                          : "transparent: IP_TRANSPARENT",
                           error);
    }
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0) {
        return errno_error("transparent: SO_REUSEADDR");
    }
    if (::bind(fd, client.get(), client.length) != 0) {
        const int error = errno;
        return errno_error("transparent: bind to the client's address " + to_string(client) +
                               (error == EADDRINUSE ? " (in use here)" : ""),
                           error);
    }
    return {};
}

std::string transparent_connect_error(int result) {
    switch (-result) {
        case ECANCELED:
            return "timeout (transparent: are the backend's replies routed back to splicer? "
                   "see scripts/transparent-setup)";
        case EADDRNOTAVAIL:
        case EADDRINUSE:
            return std::string(std::strerror(-result)) +
                   " (transparent: the client's address and port already have a connection "
                   "to this backend)";
        default:
            return std::string(std::strerror(-result));
    }
}

}  // namespace splicer::net
