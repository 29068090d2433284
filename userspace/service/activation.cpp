#include "service/activation.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include <cstring>

#include "net/sockets.h"

namespace splicer::service {

bool same_endpoint(const net::SocketAddress& a, const net::SocketAddress& b) {
    if (a.family() != b.family()) {
        return false;
    }
    if (a.family() == AF_INET) {
        const auto& x = reinterpret_cast<const sockaddr_in&>(a.storage);
        const auto& y = reinterpret_cast<const sockaddr_in&>(b.storage);
        return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
    }
    if (a.family() == AF_INET6) {
        const auto& x = reinterpret_cast<const sockaddr_in6&>(a.storage);
        const auto& y = reinterpret_cast<const sockaddr_in6&>(b.storage);
        return x.sin6_port == y.sin6_port &&
               std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof(x.sin6_addr)) == 0;
    }
    return false;
}

Result<ActivatedListeners> ActivatedListeners::take() {
    // unset_environment = 1: nothing the daemon starts later may take them for its own; the
    // fds get FD_CLOEXEC. LISTEN_PID not ours (inherited from a parent that was activated):
    // 0, nothing taken.
    const int count = ::sd_listen_fds(1);
    if (count < 0) {
        return errno_error("socket activation: sd_listen_fds", -count);
    }
    ActivatedListeners taken;
    for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + count; ++fd) {
        UniqueFd owned(fd);
        // ListenStream= with an address and port gives a listening TCP socket; anything else
        // (a unix socket, a datagram socket, Accept=yes's connected sockets) is no listener.
        if (::sd_is_socket_inet(fd, AF_UNSPEC, SOCK_STREAM, 1, 0) <= 0) {
            return Error{"socket activation: systemd passed fd " + std::to_string(fd) +
                         ", which is not a listening TCP socket (ListenStream= takes an address "
                         "and port; Accept=no)"};
        }
        const net::SocketAddress address = net::local_address(fd);
        taken.sockets_.push_back({std::move(owned), address, fd});
    }
    return taken;
}

std::optional<UniqueFd> ActivatedListeners::claim(const net::SocketAddress& address) {
    for (auto it = sockets_.begin(); it != sockets_.end(); ++it) {
        if (same_endpoint(it->address, address)) {
            UniqueFd fd = std::move(it->fd);
            sockets_.erase(it);
            return fd;
        }
    }
    return std::nullopt;
}

Result<void> ActivatedListeners::check_all_claimed() const {
    if (sockets_.empty()) {
        return {};
    }
    std::string names;
    for (const Passed& passed : sockets_) {
        names += (names.empty() ? "" : ", ") + net::to_string(passed.address) + " (fd " +
                 std::to_string(passed.number) + ")";
    }
    return Error{"socket activation: systemd passed " + names +
                 ", which no listen entry names (the unit's ListenStream= and the config's "
                 "listen and http.listen must give the same addresses and ports)"};
}

}  // namespace splicer::service
