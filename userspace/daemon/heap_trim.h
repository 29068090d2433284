#pragma once
// When freed heap memory goes back to the kernel. glibc's free() gives the top of the heap
// back with brk() as soon as more than 128 KiB are free there, and every such brk() unmaps
// pages with a TLB shootdown on every CPU. A connection frees up to two 64 KiB buffers, so a
// burst of closes paid that on nearly every close: 4,000 clients leaving at once kept the
// copy plane's loop busy 8-10 s (perf: 65% in brk's TLB flush), stalling every other client.
// Instead free() keeps the memory, and a malloc_trim() (which also returns free pages inside
// the heap, where glibc alone never would: 5,000 copy-plane connections left the daemon at
// 645 MB resident after they had all closed, 14 MB idle) runs on the once-a-second tick
// when the connections held fell 64 or more below their peak since the last trim, and at once when the last one is gone (unless a trim began less than a
// second ago: then on the next tick, so a loop that is idle between short connections many
// times a second trims at most once a second).
//
// malloc_trim() itself is not cheap: it madvise()s every free chunk of the heap, one system
// call (and TLB flush) each, and a heap with holes between live buffers has thousands.
// Measured: 4,000 copy-plane connections, every other one closed first (2,000 holes of
// 128 KiB), one malloc_trim took 2.0-2.5 s, and a client's 10 ms ping waited up to 2.56 s.
// So it runs on a thread of its own: the loop only asks for a trim and never waits for one.

#include <chrono>
#include <cstdint>
#include <memory>

namespace splicer::daemon {

class HeapTrim {
public:
    // Turns off glibc's trim on free() (M_TRIM_THRESHOLD) and gives allocations of 64 KiB and
    // more pages of their own (M_MMAP_THRESHOLD), for this process.
    HeapTrim();
    // Waits for a trim in progress, then stops the trimming thread.
    ~HeapTrim();
    HeapTrim(const HeapTrim&) = delete;
    HeapTrim& operator=(const HeapTrim&) = delete;

    // Called about once a second with the number of connections closed so far and the
    // number still held: trims when the connections held fell by kReleasedPerTrim or more
    // below their peak since the last trim (a burst left, or the load went down: memory the
    // loop will not reuse soon), or when after_release put off a trim. A steady load, with
    // as many connections arriving as leaving, reuses what the closed ones freed: a trim
    // each second there madvised the free chunks only for the next connections to fault
    // them back in (tls_term_new, perf: madvise 3.1% and those page faults 2.1% of the
    // daemon's CPU, nginx 0).
    void after_closes(std::uint64_t closed_total, std::uint32_t held);

    // Called after each connection is released, with the number still held: trims at once
    // when that was the last one (an idle daemon is back to its idle size right away), unless
    // a trim began less than kMinSpacing ago: then the next after_closes does it. A loop with
    // a few short connections at a time (one request each) is idle between them hundreds of
    // times a second, and each trim locks every malloc arena (the loops' mallocs wait) and
    // madvises the holes (TLB flushes on every CPU): a trim per idle moment cost more CPU
    // than the connections themselves.
    void after_release(std::uint32_t held, std::uint64_t closed_total);

    // Trims finished so far (on the trimming thread).
    [[nodiscard]] std::uint64_t trims_done() const;

    static constexpr std::uint32_t kReleasedPerTrim = 64;
    static constexpr std::chrono::milliseconds kMinSpacing{1000};

private:
    struct Trimmer;
    // Hands the trim to the thread (started at the first request: after the privilege drop,
    // as capabilities are per thread). A request while one runs is folded into one more pass.
    void trim(std::uint64_t closed_total, std::uint32_t held);

    std::uint64_t closed_at_last_trim_ = 0;
    // The most connections held since the last trim, as seen at each release (held + 1:
    // the count before it) and each tick.
    std::uint32_t peak_held_ = 0;
    std::chrono::steady_clock::time_point last_trim_{};  // when trim() last asked for one
    bool put_off_ = false;  // after_release skipped an idle trim: after_closes owes it
    std::unique_ptr<Trimmer> trimmer_;
};

}  // namespace splicer::daemon
