#include "daemon/heap_trim.h"

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>

#include "splicer/log.h"

namespace splicer::daemon {

namespace {

// Free memory at the heap's top that free() leaves alone (malloc_trim() returns it all, but
// only from the main thread's heap: see kMmapThresholdBytes).
constexpr int kTrimThresholdBytes = 16 * 1024 * 1024;

// Allocations this large or larger get pages of their own (mmap), given back by free() at
// once: the 64 KiB I/O buffers (copy plane, HTTP) and the sockmap plane's 256 KiB copy
// buffers. In the workers' heaps (glibc arenas of the loop threads, not the main heap)
// malloc_trim() returns only free chunks inside the heap, never the free space at its top,
// and free() shrinks that top only past M_TRIM_THRESHOLD (16 MiB above). Measured: the copy
// plane taking its buffers only while busy, after 400 connections a worker's heap top held
// 1.5-3.2 MB of buffers that nothing gave back (test_daemon_load's RSS bound failed 2 runs
// of 4); with the buffers mapped, RSS came back to within 32 KiB, 4 runs of 4. Explicit,
// the threshold also stops glibc's own adjustment (it raises a dynamic threshold to the
// largest mapped chunk freed, up to 32 MiB, after which such buffers came from the heap).
// The buffer pools (memory/buffer_pool.h) keep spares so a busy loop does not map and unmap
// a buffer per read: the copy plane 4, the HTTP proxy as many as its load swings by (with a
// fixed 16, 256 wrk connections on 2 workers cost 0.58 mmap + 0.58 munmap per request).
constexpr int kMmapThresholdBytes = 64 * 1024;
// A trim that took this long is worth a line: the heap had many holes.
constexpr auto kSlowTrim = std::chrono::milliseconds(100);

// One malloc_trim() at a time in the process. Each worker's loop has a trimmer (`workers`),
// and a trim covers the whole process, so two at once would only do the work twice; and
// glibc's first call sets up its malloc state unsynchronised (its "initialised" flag is set
// before the arenas are), so two first calls at once can walk a half-made arena list: seen
// under ASan (whose malloc leaves glibc's unset until then) as a SEGV in mtrim.
std::mutex& trim_serialiser() {
    static std::mutex mutex;
    return mutex;
}

}  // namespace

// The thread that runs malloc_trim(). Its mutex guards two flags only and is never held
// during a trim, so the loop's request() never waits for one.
struct HeapTrim::Trimmer {
    std::mutex mutex;
    std::condition_variable wake;
    bool requested = false;
    bool stopping = false;
    std::uint64_t done = 0;
    std::thread thread;

    Trimmer() : thread([this] { run(); }) {}
    ~Trimmer() {
        {
            const std::lock_guard lock(mutex);
            stopping = true;
        }
        wake.notify_one();
        thread.join();
    }
    Trimmer(const Trimmer&) = delete;
    Trimmer& operator=(const Trimmer&) = delete;

    void request() {
        {
            const std::lock_guard lock(mutex);
            requested = true;
        }
        wake.notify_one();
    }

    void run() {
        std::unique_lock lock(mutex);
        while (true) {
            wake.wait(lock, [this] { return requested || stopping; });
            if (stopping) {
                return;  // at exit: a pending trim would only delay it
            }
            requested = false;
            lock.unlock();
            const auto start = std::chrono::steady_clock::now();
            {
                const std::lock_guard one_at_a_time(trim_serialiser());
                ::malloc_trim(0);
            }
            const auto took = std::chrono::steady_clock::now() - start;
            if (took >= kSlowTrim) {
                log::notice(
                    "heap_trim",
                    {{"ms",
                      std::to_string(
                          std::chrono::duration_cast<std::chrono::milliseconds>(took).count())}});
            }
            lock.lock();
            ++done;
        }
    }
};

HeapTrim::HeapTrim() {
    ::mallopt(M_TRIM_THRESHOLD, kTrimThresholdBytes);
    ::mallopt(M_MMAP_THRESHOLD, kMmapThresholdBytes);
}

HeapTrim::~HeapTrim() = default;

void HeapTrim::after_closes(std::uint64_t closed_total, std::uint32_t held) {
    peak_held_ = std::max(peak_held_, held);
    if (put_off_ || peak_held_ - held >= kReleasedPerTrim) {
        trim(closed_total, held);
    }
}

void HeapTrim::after_release(std::uint32_t held, std::uint64_t closed_total) {
    peak_held_ = std::max(peak_held_, held + 1);
    if (held != 0 || closed_total == closed_at_last_trim_) {
        return;
    }
    if (std::chrono::steady_clock::now() - last_trim_ < kMinSpacing) {
        put_off_ = true;  // the loop's next tick (within a second) trims
        return;
    }
    trim(closed_total, held);
}

std::uint64_t HeapTrim::trims_done() const {
    if (!trimmer_) {
        return 0;
    }
    const std::lock_guard lock(trimmer_->mutex);
    return trimmer_->done;
}

void HeapTrim::trim(std::uint64_t closed_total, std::uint32_t held) {
    closed_at_last_trim_ = closed_total;
    peak_held_ = held;
    last_trim_ = std::chrono::steady_clock::now();
    put_off_ = false;
    if (!trimmer_) {
        // Started at the first trim; a thread the kernel refuses now (EAGAIN under a
        // process limit) costs this trim, never the daemon.
        try {
            trimmer_ = std::make_unique<Trimmer>();
        } catch (const std::system_error& error) {
            log::warning("heap_trim_failed", {{"error", error.what()}});
            return;
        }
    }
    trimmer_->request();
}

}  // namespace splicer::daemon
