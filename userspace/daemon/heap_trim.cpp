#include "daemon/heap_trim.h"

#include <malloc.h>

namespace splicer::daemon {

namespace {

// Free memory at the heap's top that free() leaves alone (malloc_trim() returns it all).
constexpr int kTrimThresholdBytes = 16 * 1024 * 1024;

}  // namespace

HeapTrim::HeapTrim() { ::mallopt(M_TRIM_THRESHOLD, kTrimThresholdBytes); }

void HeapTrim::after_closes(std::uint64_t closed_total) {
    if (closed_total - closed_at_last_trim_ >= kClosesPerTrim) {
        trim(closed_total);
    }
}

void HeapTrim::after_release(std::uint32_t held, std::uint64_t closed_total) {
    if (held == 0 && closed_total != closed_at_last_trim_) {
        trim(closed_total);
    }
}

void HeapTrim::trim(std::uint64_t closed_total) {
    closed_at_last_trim_ = closed_total;
    ::malloc_trim(0);
}

}  // namespace splicer::daemon
