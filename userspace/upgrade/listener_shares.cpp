#include "upgrade/listener_shares.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <string>

#include "net/sockets.h"

namespace splicer::upgrade {
namespace {

// A received group member may lack SO_REUSEPORT (a one-worker old process binds plainly):
// the kernel then refuses every joining bind. Setting it on the listening socket makes the
// next bind on the address form a group with it (inet_reuseport_add_sock looks at the
// option as it is now, not as it was at the bind).
Result<void> allow_joining(int fd) {
    int on = 0;
    socklen_t length = sizeof on;
    if (::getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, &length) == 0 && on != 0) {
        return {};
    }
    on = 1;
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) {
        return errno_error("SO_REUSEPORT on a received listener");
    }
    return {};
}

}  // namespace

Result<std::vector<std::vector<AdoptedListener>>> share_listeners(
    std::vector<AdoptedListener> handed, const net::SocketAddress& address, std::uint32_t workers,
    int backlog) {
    if (workers == 0) {
        workers = 1;
    }
    std::vector<std::vector<AdoptedListener>> shares(workers);
    std::vector<AdoptedListener> members;
    for (AdoptedListener& socket : handed) {
        if (!socket.from_systemd) {
            members.push_back(std::move(socket));
            continue;
        }
        // One socket, every worker's ring accepting from it (as daemon.cpp's listen_all
        // shares systemd's at a normal start).
        for (std::uint32_t i = 1; i < workers; ++i) {
            UniqueFd copy(::fcntl(socket.fd.get(), F_DUPFD_CLOEXEC, 0));
            if (!copy) {
                return errno_error("duplicating a received systemd socket for " +
                                   net::to_string(address));
            }
            shares[i].push_back({std::move(copy), true});
        }
        shares[0].push_back(std::move(socket));
    }
    if (members.empty()) {
        return shares;
    }
    const std::size_t received = members.size();
    if (received < workers) {
        for (const AdoptedListener& member : members) {
            if (auto allowed = allow_joining(member.fd.get()); !allowed) {
                return allowed.error();
            }
        }
    }
    // The kernel's word for where the group listens, not the config's.
    const net::SocketAddress bound = net::local_address(members.front().fd.get());
    for (std::size_t i = 0; i < received; ++i) {
        shares[i % workers].push_back(std::move(members[i]));
    }
    for (std::size_t i = received; i < workers; ++i) {
        auto joined = net::listen_on(bound, backlog, true);
        if (!joined) {
            return joined.error().with_context("joining the received listeners' group (" +
                                               std::to_string(received) + " received, " +
                                               std::to_string(workers) + " workers)");
        }
        shares[i].push_back({std::move(joined).value(), false});
    }
    return shares;
}

}  // namespace splicer::upgrade
