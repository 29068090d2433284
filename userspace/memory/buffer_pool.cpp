#include "memory/buffer_pool.h"

#include <algorithm>
#include <new>
#include <utility>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace splicer::memory {
namespace {

void poison(std::byte* data, std::size_t bytes) {
#if defined(__SANITIZE_ADDRESS__)
    ASAN_POISON_MEMORY_REGION(data, bytes);
#else
    static_cast<void>(data);
    static_cast<void>(bytes);
#endif
}

void unpoison(std::byte* data, std::size_t bytes) {
#if defined(__SANITIZE_ADDRESS__)
    ASAN_UNPOISON_MEMORY_REGION(data, bytes);
#else
    static_cast<void>(data);
    static_cast<void>(bytes);
#endif
}

}  // namespace

BufferPool::BufferPool(std::size_t buffer_bytes, std::size_t floor, std::size_t ceiling)
    : buffer_bytes_(buffer_bytes), floor_(floor), ceiling_(std::max(floor, ceiling)) {
    kept_.reserve(floor_);
}

BufferPool::~BufferPool() {
    free_beyond(0);
}

std::unique_ptr<std::byte[]> BufferPool::take() {
    std::unique_ptr<std::byte[]> buffer;
    if (kept_.empty()) {
        buffer = std::make_unique_for_overwrite<std::byte[]>(buffer_bytes_);
    } else {
        buffer = std::move(kept_.back());
        kept_.pop_back();
        unpoison(buffer.get(), buffer_bytes_);
    }
    net_high_ = std::max(net_high_, ++net_taken_);
    return buffer;
}

void BufferPool::give_back(std::unique_ptr<std::byte[]> buffer) noexcept {
    if (!buffer) {
        return;
    }
    net_low_ = std::min(net_low_, --net_taken_);
    if (kept_.size() >= keep_bound()) {
        return;  // freed here: its pages go back to the kernel (daemon/heap_trim.h)
    }
    if (kept_.size() == kept_.capacity()) {
        // Room for more spares: doubling, so a load that grows one buffer at a time
        // reallocates the list log(n) times. Without memory for it, the buffer is freed.
        try {
            kept_.reserve(2 * kept_.capacity() + 1);
        } catch (const std::bad_alloc&) {
            return;
        }
    }
    poison(buffer.get(), buffer_bytes_);
    kept_.push_back(std::move(buffer));
}

void BufferPool::end_period() noexcept {
    last_swing_ = static_cast<std::size_t>(net_high_ - net_low_);
    net_taken_ = net_high_ = net_low_ = 0;
    free_beyond(keep_bound());
}

std::size_t BufferPool::keep_bound() const {
    const auto swing = static_cast<std::size_t>(net_high_ - net_low_);
    return std::clamp(std::max(swing, last_swing_), floor_, ceiling_);
}

void BufferPool::free_beyond(std::size_t kept_at_most) noexcept {
    if (kept_.size() <= kept_at_most) {
        return;
    }
    // The coldest (given back first) are at the front.
    const auto excess = static_cast<std::ptrdiff_t>(kept_.size() - kept_at_most);
    for (auto it = kept_.begin(); it != kept_.begin() + excess; ++it) {
        unpoison(it->get(), buffer_bytes_);  // the allocator's own memory again
    }
    kept_.erase(kept_.begin(), kept_.begin() + excess);
}

}  // namespace splicer::memory
