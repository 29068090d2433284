#include "memory/buffer_pool.h"

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

BufferPool::BufferPool(std::size_t buffer_bytes, std::size_t keep)
    : buffer_bytes_(buffer_bytes), keep_(keep) {
    kept_.reserve(keep_);
}

BufferPool::~BufferPool() {
    for (auto& buffer : kept_) {
        unpoison(buffer.get(), buffer_bytes_);  // the allocator's own memory again
    }
}

std::unique_ptr<std::byte[]> BufferPool::take() {
    if (kept_.empty()) {
        return std::make_unique_for_overwrite<std::byte[]>(buffer_bytes_);
    }
    std::unique_ptr<std::byte[]> buffer = std::move(kept_.back());
    kept_.pop_back();
    unpoison(buffer.get(), buffer_bytes_);
    return buffer;
}

void BufferPool::give_back(std::unique_ptr<std::byte[]> buffer) noexcept {
    if (!buffer || kept_.size() >= keep_) {
        return;  // freed here; the heap trimmer returns its pages (daemon/heap_trim.h)
    }
    poison(buffer.get(), buffer_bytes_);
    kept_.push_back(std::move(buffer));  // within the reserved capacity: no allocation
}

}  // namespace splicer::memory
