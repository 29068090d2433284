#pragma once
// Gives heap memory freed after a burst of connections back to the kernel. glibc keeps freed
// heap memory for reuse and returns only what sits at the very top of the heap: per-connection
// buffers (the copy plane's 64 KiB per direction) are under its mmap threshold, so a daemon
// that held 5,000 copy-plane connections stayed at ~640 MB resident after they had all closed
// (21 MB before; tests/privileged/test_daemon_load.cpp). malloc_trim(0) releases the free
// pages; it walks the heap (milliseconds per GB, microseconds when small), so it runs when
// the last connection is gone, and during a burst only when the connections held have fallen
// to half their peak since the last trim, after enough releases to be worth it.

#include <malloc.h>

#include <algorithm>
#include <cstdint>

namespace splicer::daemon {

class BurstTrimmer {
public:
    // Call after each connection is released, with the number still held.
    void held(std::uint32_t count) {
        peak_ = std::max(peak_, count + 1);
        ++released_;
        if (count == 0 || (released_ >= kMinimumReleases && count <= peak_ / 2)) {
            ::malloc_trim(0);
            peak_ = count;
            released_ = 0;
        }
    }

private:
    // Fewer releases free at most a few MiB of buffers: not worth a walk of the heap.
    static constexpr std::uint32_t kMinimumReleases = 64;
    std::uint32_t peak_ = 0;
    std::uint32_t released_ = 0;
};

}  // namespace splicer::daemon
