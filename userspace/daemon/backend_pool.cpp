#include "daemon/backend_pool.h"

#include <liburing.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>

#include "uring/tag.h"

namespace splicer::daemon {

namespace {

std::uint64_t pool_tag(PoolOp op, std::uint32_t slot, std::uint16_t generation) {
    return uring::Tag::of(uring::Owner::pool, op, 0, generation, slot).encode();
}

}  // namespace

std::string BackendKey::text() const {
    std::string out = net::to_string(address);
    if (tls_context != nullptr) {
        // The context's address only tells contexts apart: a reload's new one (new CA file,
        // verify setting) never takes a session verified under the old one.
        out += " tls " + std::to_string(reinterpret_cast<std::uintptr_t>(tls_context)) + " " +
               tls_name;
    }
    return out;
}

BackendPool::~BackendPool() = default;

std::optional<IdleBackend> BackendPool::take(const BackendKey& key) {
    const auto list = lists_.find(key.text());
    if (list == lists_.end() || list->second.empty()) {
        return std::nullopt;
    }
    const std::uint32_t slot = list->second.back();
    IdleBackend backend = std::move(entries_[slot].backend);
    release(slot, false);
    return backend;
}

void BackendPool::put(const BackendKey& key, IdleBackend backend, std::size_t per_backend,
                      std::chrono::steady_clock::duration timeout) {
    if (per_backend == 0) {
        return;  // `backend` closes its socket here
    }
    std::string text = key.text();
    std::vector<std::uint32_t>& list = lists_[text];
    if (list.size() >= per_backend) {
        ++counts_.idle_closed;
        release(list.front(), true);  // the oldest goes: the newest is the likeliest alive
    }
    if (idle_ >= kMaxIdle) {
        // Full in all: the oldest of the longest list goes.
        auto longest = std::max_element(
            lists_.begin(), lists_.end(),
            [](const auto& a, const auto& b) { return a.second.size() < b.second.size(); });
        ++counts_.idle_closed;
        release(longest->second.front(), true);
    }
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
    entry.key = std::move(text);
    entry.backend = std::move(backend);
    entry.expires = std::chrono::steady_clock::now() + timeout;
    lists_[entry.key].push_back(slot);
    ++idle_;
    watch(slot);
}

void BackendPool::watch(std::uint32_t slot) {
    const Entry& entry = entries_[slot];
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

void BackendPool::expire(std::chrono::steady_clock::time_point now) {
    for (std::uint32_t slot = 0; slot < entries_.size(); ++slot) {
        if (entries_[slot].in_use && entries_[slot].expires <= now) {
            ++counts_.idle_closed;
            release(slot, true);
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

void BackendPool::unlist(const std::string& key, std::uint32_t slot) {
    const auto list = lists_.find(key);
    if (list == lists_.end()) {
        return;
    }
    std::erase(list->second, slot);
    if (list->second.empty()) {
        lists_.erase(list);
    }
}

void BackendPool::release(std::uint32_t slot, bool close_socket) {
    Entry& entry = entries_[slot];
    // The poll may still be armed: remove it by its tag. Its completion (and the removal's)
    // then names a generation no longer in use.
    io_uring_sqe* cancel = ring_.sqe();
    io_uring_prep_poll_remove(cancel, pool_tag(PoolOp::watch, slot, entry.generation));
    cancel->user_data = pool_tag(PoolOp::cancel, slot, entry.generation);
    if (close_socket && entry.backend.socket) {
        // The pending poll holds a reference to the socket: close() alone would leave it
        // open (no FIN) until the poll is gone. shutdown ends it now.
        ::shutdown(entry.backend.socket.get(), SHUT_RDWR);
    }
    if (close_socket) {
        entry.backend = IdleBackend{};
    }
    unlist(entry.key, slot);
    entry.key.clear();
    entry.in_use = false;
    ++entry.generation;
    --idle_;
    free_.push_back(slot);
}

}  // namespace splicer::daemon
