#include "log/line_queue.h"

#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "splicer/log.h"

namespace splicer::log {
namespace {

using Clock = std::chrono::steady_clock;

// How often the writer may add a log_dropped line while lines keep being dropped.
constexpr auto kDropReportInterval = std::chrono::seconds(1);

// Lines are written in batches, not one write(2) and one thread wake per line: a busy daemon
// logs a line per request, and waking the writer for each cost a futex wake, a context
// switch and a write per request (8% of the daemon's CPU at 1,000 TLS connections a
// second). The writer, woken by the first line of a batch, gathers for at most this long
// (or until kBatchBytes wait) and writes them with one call: a line reaches stderr at most
// this late. An idle daemon's writer still sleeps until a line comes: no periodic wake.
constexpr auto kGatherFor = std::chrono::milliseconds(20);

// Pending bytes that end the gathering early (a quarter of a small buffer): the batch is
// written well before the buffer fills and lines would be dropped.
constexpr std::size_t kBatchBytes = 64 * 1024;

// Writes all of `bytes` to stderr, blocking. False when stderr is gone (EPIPE, EBADF, ...):
// the bytes are lost then, as they would be with a plain write.
bool write_fully(std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::write(STDERR_FILENO, bytes.data(), bytes.size());
        if (n > 0) {
            bytes.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            // Someone else made the shared description non-blocking: wait for room instead.
            pollfd room{.fd = STDERR_FILENO, .events = POLLOUT, .revents = 0};
            (void)::poll(&room, 1, 1000);
            continue;
        }
        return false;
    }
    return true;
}

// Shared by log calls (any thread) and the writer thread. Heap-allocated and never freed: a
// writer blocked in write(2) at exit is left running, and must still find it.
struct Queue {
    std::mutex mutex;
    std::condition_variable wake;      // lines queued, or stopping
    std::condition_variable finished;  // the writer thread returned
    std::string pending;               // whole lines, each ending in '\n'
    std::size_t capacity = 0;
    std::size_t batch_bytes = 0;   // pending bytes that wake the writer before kGatherFor
    std::uint64_t unreported = 0;  // dropped since the last log_dropped line
    Clock::time_point reported{};
    bool parked = false;  // the writer sleeps until a line comes (none came for a gathering)
    bool stopping = false;
    bool done = false;
    std::thread thread;  // runs run_writer
};

// Set once by start_writer, before any other thread can read it (the writer is the first
// thread the daemon starts after the privilege drop; log calls from the reload thread come
// later). After stop_writer it stays set when the writer was left blocked.
std::atomic<Queue*> queue{nullptr};
std::atomic<bool> abandoned{false};  // stop_writer gave up on a blocked writer
std::atomic<std::uint64_t> dropped{0};

// The line reporting `count` drops (with the total so far), formatted like any other.
std::string drop_report(std::uint64_t count) {
    std::string line =
        format_line(Level::warning, "log_dropped",
                    {{"dropped", std::to_string(count)},
                     {"total", std::to_string(dropped.load(std::memory_order_relaxed))}});
    line += '\n';
    return line;
}

void run_writer(Queue& state) {
    std::unique_lock lock(state.mutex);
    // The last gathering found lines: gather again on the clock instead of parking, so that
    // under a steady stream of lines the writer wakes once per kGatherFor by its own timer
    // and no log call has to wake it. Parking after each batch made the next line's log call
    // signal the condition variable (a futex wake, and the writer's switch in, on top of the
    // gathering's own): ~1 futex call per terminated TLS connection at 1,700 a second, and
    // two writer wakes per batch instead of one.
    bool lines_lately = false;
    // The last batch's buffer, emptied, goes back as the next `pending`: the log calls append
    // into a buffer that already has room, instead of growing a new one by reallocations per
    // batch that the writer then frees: once the two buffers are grown, neither thread
    // allocates or frees for the log (a free of another thread's malloc arena chunk takes
    // that arena's lock, which its worker takes in each of its own mallocs).
    std::string batch;
    while (true) {
        if (state.pending.empty() && !state.stopping && !lines_lately) {
            // Wake for new lines, or to report drops once the interval has passed.
            state.parked = true;
            if (state.unreported > 0) {
                state.wake.wait_until(lock, state.reported + kDropReportInterval);
            } else {
                state.wake.wait(lock);
            }
            state.parked = false;
        }
        // Writing works again (or never stopped): say what was lost meanwhile, at most once a
        // second, and at the stop whatever is left.
        if (state.unreported > 0 &&
            (state.stopping || Clock::now() - state.reported >= kDropReportInterval)) {
            state.pending += drop_report(state.unreported);  // may pass capacity by this line
            state.unreported = 0;
            state.reported = Clock::now();
        }
        // Let more lines join this batch (not while stopping: the exit is waiting). Log calls
        // do not wake this wait; only a full batch or the stop end it early.
        if (!state.stopping) {
            state.wake.wait_for(lock, kGatherFor, [&state] {
                return state.stopping || state.pending.size() >= state.batch_bytes;
            });
        }
        if (state.pending.empty()) {
            if (state.stopping) {
                break;
            }
            lines_lately = false;  // a whole gathering without a line: park
            continue;
        }
        lines_lately = true;
        if (batch.capacity() > 2 * state.batch_bytes) {
            batch = std::string();  // a burst's outsized buffer is not kept
        }
        batch.clear();
        batch.swap(state.pending);
        lock.unlock();
        (void)write_fully(batch);
        lock.lock();
    }
    state.done = true;
    state.finished.notify_all();
}

}  // namespace

void start_writer(std::size_t buffer_bytes) {
    if (queue.load() != nullptr) {
        return;
    }
    auto* state = new Queue();
    state->capacity = buffer_bytes;
    state->batch_bytes = std::max<std::size_t>(1, std::min(kBatchBytes, buffer_bytes / 4));
    state->thread = std::thread(run_writer, std::ref(*state));
    // Named for top -H, perf and the tests, which count this thread's wakes.
    (void)pthread_setname_np(state->thread.native_handle(), kWriterThreadName);
    queue.store(state);
}

void stop_writer(std::chrono::milliseconds flush_within) {
    Queue* state = queue.load();
    if (state == nullptr || abandoned.load()) {
        return;
    }
    std::unique_lock lock(state->mutex);
    state->stopping = true;
    state->wake.notify_all();
    if (!state->finished.wait_for(lock, flush_within, [state] { return state->done; })) {
        // Blocked in write(2): nobody reads. Leave it; the process is about to exit.
        abandoned.store(true);
        lock.unlock();
        state->thread.detach();
        return;
    }
    lock.unlock();
    state->thread.join();
    queue.store(nullptr);
    delete state;
}

std::uint64_t dropped_lines() {
    return dropped.load(std::memory_order_relaxed);
}

bool emit(std::string line) {
    Queue* state = queue.load();
    if (state == nullptr) {
        if (abandoned.load()) {
            dropped.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        // Before the writer starts (start-up, tools, tests): one write(2) per line, so lines
        // from concurrent writers never interleave.
        const ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
        (void)ignored;
        return true;
    }
    const std::lock_guard lock(state->mutex);
    if (state->stopping && abandoned.load()) {
        dropped.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
    if (state->pending.size() + line.size() > state->capacity) {
        dropped.fetch_add(1, std::memory_order_relaxed);
        ++state->unreported;
        return false;
    }
    const std::size_t before = state->pending.size();
    state->pending += line;
    // The writer parks only after a gathering without a line, and otherwise wakes on its own
    // timer: wake it for a line that finds it parked, or for a batch that just filled.
    if (state->parked ||
        (before < state->batch_bytes && state->pending.size() >= state->batch_bytes)) {
        state->wake.notify_one();
    }
    return true;
}

}  // namespace splicer::log
