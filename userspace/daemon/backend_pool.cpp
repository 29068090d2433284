#include "daemon/backend_pool.h"

#include <liburing.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <string_view>

#include "uring/tag.h"

namespace splicer::daemon {

namespace {

std::uint64_t pool_tag(PoolOp op, std::uint32_t slot, std::uint16_t generation) {
    return uring::Tag::of(uring::Owner::pool, op, 0, generation, slot).encode();
}

// The bytes of `address` that name it (family, port, address; IPv6's scope too), whatever
// the rest of the storage holds.
std::string_view address_bytes(const net::SocketAddress& address) {
    const auto* bytes = reinterpret_cast<const char*>(address.get());
    switch (address.family()) {
        case AF_INET:
            return {bytes, sizeof(sockaddr_in) - sizeof(sockaddr_in::sin_zero)};
        case AF_INET6:
            return {bytes, sizeof(sockaddr_in6)};
        default:
            return {bytes, address.length};
    }
}

// An idle connection's socket has nothing to read: no FIN, no reset, no stray byte (a peek
// that would block). Anything else means it cannot take a request.
bool nothing_to_read(int socket) {
    char byte = 0;
    const ssize_t n = ::recv(socket, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

bool BackendKey::operator==(const BackendKey& other) const {
    return tls_context == other.tls_context &&
           address_bytes(address) == address_bytes(other.address) && tls_name == other.tls_name;
}

std::size_t BackendKeyHash::operator()(const BackendKey& key) const {
    const std::hash<std::string_view> hash;
    std::size_t seed = hash(address_bytes(key.address));
    seed ^= std::hash<const void*>{}(key.tls_context) + 0x9e3779b97f4a7c15ULL + (seed << 6) +
            (seed >> 2);
    if (!key.tls_name.empty()) {
        seed ^= hash(key.tls_name) + 0x9e3779b97f4a7c15ULL + (seed << 6) + (seed >> 2);
    }
    return seed;
}

BackendPool::~BackendPool() = default;

std::optional<IdleBackend> BackendPool::take(const BackendKey& key, bool check_first) {
    // Each round either returns or closes one entry of the list: bounded by its length.
    while (true) {
        const auto list = lists_.find(key);
        if (list == lists_.end() || list->second.slots.empty()) {
            return std::nullopt;
        }
        const std::uint32_t slot = list->second.slots.back();
        Entry& entry = entries_[slot];
        if (check_first && !nothing_to_read(entry.backend.socket.get())) {
            ++counts_.idle_closed;
            release(slot, true);  // may erase the list: looked up again
            continue;
        }
        IdleBackend backend = std::move(entry.backend);
        release(slot, false);
        return backend;
    }
}

void BackendPool::put(const BackendKey& key, IdleBackend backend, std::size_t per_backend,
                      std::chrono::steady_clock::duration timeout) {
    if (per_backend == 0) {
        return;  // `backend` closes its socket here
    }
    if (idle_ >= kMaxIdle) {
        // Full in all: the oldest of the longest list goes (the newest is the likeliest
        // alive). Found before this key's list is made, so the longest is never an empty one.
        auto longest = std::max_element(lists_.begin(), lists_.end(), [](const auto& a,
                                                                         const auto& b) {
            return a.second.slots.size() < b.second.slots.size();
        });
        ++counts_.idle_closed;
        release(longest->second.slots.front(), true);
    }
    lists_[key].floor = per_backend;
    std::uint32_t slot = 0;
    if (!free_.empty()) {
        slot = free_.back();
        free_.pop_back();
    } else {
        slot = static_cast<std::uint32_t>(entries_.size());
        entries_.emplace_back();
    }
    Entry& entry = entries_[slot];
    entry.in_use = true;
    entry.key = key;
    entry.backend = std::move(backend);
    entry.expires = std::chrono::steady_clock::now() + timeout;
    lists_[entry.key].slots.push_back(slot);
    ++idle_;
    // Watched from the next expire() on, unless taken before (the header says why).
    entry.watched = false;
}

void BackendPool::watch(std::uint32_t slot) {
    Entry& entry = entries_[slot];
    entry.watched = true;
    io_uring_sqe* sqe = ring_.sqe();
    io_uring_prep_poll_add(sqe, entry.backend.socket.get(), POLLIN | POLLRDHUP);
    sqe->user_data = pool_tag(PoolOp::watch, slot, entry.generation);
}

void BackendPool::on_completion(PoolOp op, std::uint32_t slot, std::uint16_t generation,
                                int result) {
    if (op != PoolOp::watch || slot >= entries_.size()) {
        return;
    }
    Entry& entry = entries_[slot];
    if (!entry.in_use || entry.generation != generation) {
        return;  // taken, expired or replaced since: the poll was cancelled
    }
    if (result == -ECANCELED) {
        return;
    }
    // Readable, hung up or failed: an idle HTTP/1.1 backend has nothing to say, so it is
    // going away (or broke the protocol). Either way it cannot take a request.
    ++counts_.idle_closed;
    release(slot, true);
}

void BackendPool::trim_unused(IdleList& list) {
    const std::size_t unused = std::min(list.least, list.slots.size());
    if (list.slots.size() <= list.floor || unused == 0) {
        return;
    }
    const std::size_t closing = std::min((unused + 1) / 2, list.slots.size() - list.floor);
    // The oldest first: the front of the list is what the load left untouched. Copied out:
    // release() edits the list (and erases it once empty, which the floor never allows here
    // unless it is 0).
    const std::vector<std::uint32_t> oldest(list.slots.begin(),
                                            list.slots.begin() + static_cast<long>(closing));
    for (const std::uint32_t slot : oldest) {
        ++counts_.idle_closed;
        release(slot, true);
    }
}

void BackendPool::expire(std::chrono::steady_clock::time_point now) {
    if (++expires_since_trim_ >= kTrimPeriod) {
        expires_since_trim_ = 0;
        // Collected first: trimming may erase a list (release() drops an emptied one).
        std::vector<BackendKey> keys;
        keys.reserve(lists_.size());
        for (const auto& [key, list] : lists_) {
            keys.push_back(key);
        }
        for (const BackendKey& key : keys) {
            if (const auto list = lists_.find(key); list != lists_.end()) {
                trim_unused(list->second);
            }
        }
        for (auto& [key, list] : lists_) {
            list.least = list.slots.size();  // the next period's count starts from here
        }
    }
    for (std::uint32_t slot = 0; slot < entries_.size(); ++slot) {
        if (!entries_[slot].in_use) {
            continue;
        }
        if (entries_[slot].expires <= now) {
            ++counts_.idle_closed;
            release(slot, true);
        } else if (!entries_[slot].watched) {
            watch(slot);
        }
    }
}

void BackendPool::clear() {
    for (std::uint32_t slot = 0; slot < entries_.size(); ++slot) {
        if (entries_[slot].in_use) {
            release(slot, true);
        }
    }
}

void BackendPool::unlist(const BackendKey& key, std::uint32_t slot) {
    const auto list = lists_.find(key);
    if (list == lists_.end()) {
        return;
    }
    std::vector<std::uint32_t>& slots = list->second.slots;
    if (!slots.empty() && slots.back() == slot) {
        slots.pop_back();  // a take(): the list may be long under load, no search
    } else {
        std::erase(slots, slot);
    }
    if (slots.empty()) {
        lists_.erase(list);
        return;
    }
    list->second.least = std::min(list->second.least, slots.size());
}

void BackendPool::release(std::uint32_t slot, bool close_socket) {
    Entry& entry = entries_[slot];
    if (entry.watched) {
        // The poll may still be armed: remove it by its tag. Its completion (and the
        // removal's) then names a generation no longer in use.
        io_uring_sqe* cancel = ring_.sqe();
        io_uring_prep_poll_remove(cancel, pool_tag(PoolOp::watch, slot, entry.generation));
        cancel->user_data = pool_tag(PoolOp::cancel, slot, entry.generation);
        entry.watched = false;
    }
    if (close_socket && entry.backend.socket) {
        // The pending poll holds a reference to the socket: close() alone would leave it
        // open (no FIN) until the poll is gone. shutdown ends it now.
        ::shutdown(entry.backend.socket.get(), SHUT_RDWR);
    }
    if (close_socket) {
        entry.backend = IdleBackend{};
    }
    unlist(entry.key, slot);
    entry.key.tls_name.clear();
    entry.in_use = false;
    ++entry.generation;
    --idle_;
    free_.push_back(slot);
}

}  // namespace splicer::daemon
