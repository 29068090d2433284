#include "upgrade/handover.h"

#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <set>
#include <utility>
#include <vector>

#include "privsep/channel.h"
#include "splicer/unique_fd.h"
#include "upgrade/fd_passing.h"

namespace splicer::upgrade {
namespace {

// The offer's few records go into an empty socket buffer: a send that waits at all has a
// dead peer.
constexpr long kOfferSendSeconds = 5;

// Each socket once. The workers share systemd's one socket through duplicated fds
// (daemon.cpp's listen_all): offered once, the new process shares it out again.
std::vector<ListenerToHand> distinct_sockets(std::span<const ListenerToHand> listeners) {
    std::vector<ListenerToHand> distinct;
    std::set<std::pair<dev_t, ino_t>> seen;
    for (const ListenerToHand& listener : listeners) {
        struct stat status {};
        if (::fstat(listener.fd, &status) != 0 ||
            seen.insert({status.st_dev, status.st_ino}).second) {
            distinct.push_back(listener);  // one fstat cannot tell: offered, checked there
        }
    }
    return distinct;
}

}  // namespace

Result<HandedOver> hand_over(Launcher& launcher, std::span<const ListenerToHand> listeners,
                        std::chrono::seconds ready_timeout) {
    const std::vector<ListenerToHand> distinct = distinct_sockets(listeners);
    if (distinct.empty() || distinct.size() > kMaxListeners) {
        return Error{std::to_string(distinct.size()) + " listeners to hand over (1 to " +
                     std::to_string(kMaxListeners) + ")"};
    }
    int ends[2] = {-1, -1};
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) != 0) {
        return errno_error("handover socketpair");
    }
    UniqueFd ours(ends[0]);
    UniqueFd theirs(ends[1]);
    if (auto timed = privsep::set_timeouts(ours.get(), kOfferSendSeconds, ready_timeout.count());
        !timed) {
        return timed.error();
    }
    if (auto launched = launcher.launch(theirs.get()); !launched) {
        return launched.error().with_context("asking the launcher to start " + launcher.binary());
    }
    // Only the new process holds that end now: when it exits, ours reads EOF at once.
    theirs.reset();
    std::vector<OfferedListener> offered;
    std::vector<int> fds;
    for (const ListenerToHand& listener : distinct) {
        offered.push_back(listener.what);
        fds.push_back(listener.fd);
    }
    // A binary that is missing or exits at once may already be gone: the send then fails
    // (EPIPE), or succeeds into a buffer nobody reads and the receive below sees EOF.
    const std::vector<std::string> records = encode_offer(offered);
    for (std::size_t i = 0; i < records.size(); ++i) {
        const std::span<const int> batch = std::span<const int>(fds).subspan(
            i * kListenersPerRecord,
            std::min(kListenersPerRecord, fds.size() - i * kListenersPerRecord));
        if (auto sent = send_record(ours.get(), records[i], batch); !sent) {
            return Error{"the new process exited before ready (" + sent.error().message + ")"};
        }
    }
    auto answer = receive_record(ours.get(), kMaxRecordBytes, 0);
    if (!answer) {
        if (answer.error().message == "closed") {
            return Error{"the new process exited before ready"};
        }
        return answer.error().with_context("waiting for the new process's ready");
    }
    const auto* bytes = reinterpret_cast<const std::byte*>(answer->bytes.data());
    auto pid = decode_ready({bytes, answer->bytes.size()});
    if (!pid) {
        return pid.error();
    }
    if (auto timed = privsep::set_timeouts(ours.get(), kOfferSendSeconds, kAnswerTimeout.count());
        !timed) {
        return timed.error();
    }
    return HandedOver{.pid = *pid, .socket = std::move(ours)};
}

}  // namespace splicer::upgrade
