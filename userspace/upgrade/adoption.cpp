#include "upgrade/adoption.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <utility>

#include "net/sockets.h"
#include "privsep/channel.h"
#include "service/activation.h"
#include "upgrade/fd_passing.h"
#include "upgrade/handover_protocol.h"
#include "upgrade/launcher.h"

namespace splicer::upgrade {
namespace {

// The old process sends its offer right after starting this one: a start that waits longer
// has lost its peer.
constexpr long kOfferWaitSeconds = 10;
// The old process waits for ready (upgrade/handover.h); a send that cannot go out at once
// means it is gone.
constexpr long kReadySendSeconds = 5;

int socket_option(int fd, int option) {
    int value = -1;
    socklen_t length = sizeof value;
    if (::getsockopt(fd, SOL_SOCKET, option, &value, &length) != 0) {
        return -1;
    }
    return value;
}

// The variable's value as an fd that is an open unix SOCK_SEQPACKET socket, above stdio.
Result<UniqueFd> handover_socket(const char* text) {
    int fd = -1;
    const char* end = text + std::strlen(text);
    const auto parsed = std::from_chars(text, end, fd);
    if (parsed.ec != std::errc() || parsed.ptr != end || fd <= 2) {
        return Error{std::string(kUpgradeFdVariable) + " is not an fd number above 2"};
    }
    struct stat status {};
    if (::fstat(fd, &status) != 0 || !S_ISSOCK(status.st_mode)) {
        return Error{std::string(kUpgradeFdVariable) + "=" + text + " is not an open socket"};
    }
    if (socket_option(fd, SO_DOMAIN) != AF_UNIX || socket_option(fd, SO_TYPE) != SOCK_SEQPACKET) {
        return Error{std::string(kUpgradeFdVariable) + "=" + text +
                     " is not a unix seqpacket socket"};
    }
    UniqueFd owned(fd);
    // Owned now: not inherited by anything this process starts later.
    if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        return errno_error("close-on-exec on the handover socket");
    }
    return owned;
}

bool listening_tcp(int fd) {
    return socket_option(fd, SO_ACCEPTCONN) == 1 && socket_option(fd, SO_TYPE) == SOCK_STREAM &&
           socket_option(fd, SO_PROTOCOL) == IPPROTO_TCP;
}

}  // namespace

Result<Adoption> Adoption::take() {
    Adoption adoption;
    const char* value = std::getenv(kUpgradeFdVariable);
    if (value == nullptr) {
        return adoption;
    }
    const std::string text = value;
    ::unsetenv(kUpgradeFdVariable);  // not passed on to anything this process starts
    auto socket = handover_socket(text.c_str());
    if (!socket) {
        return socket.error().with_context("upgrade");
    }
    if (auto timed = privsep::set_timeouts(socket->get(), kReadySendSeconds, kOfferWaitSeconds);
        !timed) {
        return timed.error().with_context("upgrade");
    }
    // The offer's records, in order: each names its place in the whole, which must follow
    // on from the one before; at most kMaxListeners / kListenersPerRecord + 1 reads.
    std::size_t total = 0;
    std::set<std::pair<dev_t, ino_t>> seen;
    do {
        auto record = receive_record(socket->get(), kMaxRecordBytes, kListenersPerRecord);
        if (!record) {
            return record.error().with_context("upgrade: reading the offer");
        }
        const auto* bytes = reinterpret_cast<const std::byte*>(record->bytes.data());
        auto part = decode_offer({bytes, record->bytes.size()});
        if (!part) {
            return part.error().with_context("upgrade");
        }
        if (part->first != adoption.offered_count_ || (total != 0 && part->total != total)) {
            return Error{"upgrade: an offer record of listeners from " +
                         std::to_string(part->first) + " of " + std::to_string(part->total) +
                         " after " + std::to_string(adoption.offered_count_) + " (out of order)"};
        }
        total = part->total;
        if (part->listeners.size() != record->fds.size()) {
            return Error{"upgrade: an offer record of " + std::to_string(part->listeners.size()) +
                         " listeners with " + std::to_string(record->fds.size()) + " fds"};
        }
        for (std::size_t i = 0; i < part->listeners.size(); ++i) {
            UniqueFd& fd = record->fds[i];
            const std::size_t index = part->first + i;
            if (!listening_tcp(fd.get())) {
                return Error{"upgrade: offered fd " + std::to_string(index) +
                             " is not a listening TCP socket"};
            }
            ++adoption.offered_count_;
            struct stat status {};
            if (::fstat(fd.get(), &status) != 0 ||
                !seen.insert({status.st_dev, status.st_ino}).second) {
                // The same socket twice: one fd of it is enough (closing this one leaves the
                // socket open), and Adoption::claim hands each socket out once.
                continue;
            }
            const net::SocketAddress address = net::local_address(fd.get());
            const OfferedListener& what = part->listeners[i];
            adoption.offered_.push_back(
                {std::move(fd), address, what.http, what.from_systemd, what.metrics});
        }
    } while (adoption.offered_count_ < total);
    adoption.socket_ = std::move(socket).value();
    return adoption;
}

std::vector<AdoptedListener> Adoption::claim(const net::SocketAddress& address, bool http) {
    std::vector<AdoptedListener> claimed;
    for (auto it = offered_.begin(); it != offered_.end();) {
        if (!it->metrics && it->http == http && service::same_endpoint(it->address, address)) {
            claimed.push_back({std::move(it->fd), it->from_systemd});
            it = offered_.erase(it);  // handed out once
        } else {
            ++it;
        }
    }
    return claimed;
}

std::optional<UniqueFd> Adoption::claim_metrics(const net::SocketAddress& address) {
    for (auto it = offered_.begin(); it != offered_.end(); ++it) {
        if (it->metrics && service::same_endpoint(it->address, address)) {
            UniqueFd claimed = std::move(it->fd);
            offered_.erase(it);
            return claimed;
        }
    }
    return std::nullopt;
}

Result<void> Adoption::check_all_claimed() const {
    if (offered_.empty()) {
        return {};
    }
    std::string names;
    for (const Offered& offered : offered_) {
        names += (names.empty() ? "" : ", ") + net::to_string(offered.address) +
                 (offered.http ? " (http)" : "") + (offered.metrics ? " (metrics)" : "");
    }
    return Error{
        "upgrade: offered listeners no listen entry names (restart to change "
        "listeners): " +
        names};
}

Result<void> Adoption::send_ready() {
    const std::string ready = encode_ready(::getpid());
    if (auto sent = send_record(socket_.get(), ready, {}); !sent) {
        socket_.reset();
        return sent.error().with_context("upgrade: telling the old process ready");
    }
    return {};
}

UniqueFd Adoption::take_socket() {
    if (socket_) {
        // Best effort: a socket without it waits as long as the offer did.
        (void)privsep::set_timeouts(socket_.get(), kReadySendSeconds, kBatchWaitSeconds);
    }
    return std::move(socket_);
}

}  // namespace splicer::upgrade
