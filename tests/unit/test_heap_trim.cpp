// HeapTrim gives freed heap memory back without the loop waiting for it: malloc_trim()
// madvise()s every free chunk, one system call each, so a heap with holes between live
// buffers (connections closing in no order) took seconds; it runs on a thread of its own.

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "daemon/heap_trim.h"

namespace {

std::uint64_t resident_kib() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("VmRSS:", 0) == 0) {
            return std::stoull(line.substr(6));
        }
    }
    return 0;
}

}  // namespace

TEST_CASE("HeapTrim: the loop asks for a trim and never waits for it", "[heap][figures]") {
    auto trim = std::make_unique<splicer::daemon::HeapTrim>();  // M_TRIM_THRESHOLD first
    // 4,000 touched 32 KiB blocks (below the 64 KiB from which allocations get pages of their
    // own, so from the heap) with a live one after each, then every other freed: 4,000 holes
    // in the heap, 128 MB to give back.
    constexpr int kBuffers = 8000;
    constexpr std::size_t kBytes = 32 * 1024;
    std::vector<std::unique_ptr<char[]>> buffers;
    for (int i = 0; i < kBuffers; ++i) {
        buffers.push_back(std::make_unique<char[]>(kBytes));
        std::memset(buffers.back().get(), 1, kBytes);
    }
    for (int i = 0; i < kBuffers; i += 2) {
        buffers[static_cast<std::size_t>(i)].reset();
    }
    const std::uint64_t before = resident_kib();
    const auto asked = std::chrono::steady_clock::now();
    trim->after_release(0, 1);  // the last connection is gone: trim now
    const auto waited = std::chrono::steady_clock::now() - asked;
    const auto waited_ms = std::chrono::duration<double, std::milli>(waited).count();
    const auto deadline = asked + std::chrono::seconds(30);
    while (trim->trims_done() == 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const auto trimmed_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - asked).count();
    REQUIRE(trim->trims_done() == 1);
    const std::uint64_t after = resident_kib();
    WARN("after_release returned in " << waited_ms << " ms; the trim took " << trimmed_ms
                                      << " ms; VmRSS " << before / 1024 << " -> " << after / 1024
                                      << " MiB");
    CHECK(waited_ms < 20);
#ifndef __SANITIZE_ADDRESS__
    // (ASan's allocator is not glibc's heap: nothing for malloc_trim to give back there;
    // scripts/test runs this case in the debug build only, tag [figures].)
    CHECK(before > after + 100 * 1024);  // the 128 MB of holes went back
#endif
}

// The 64 KiB buffers (copy plane, HTTP) and larger ones have pages of their own: a burst's
// buffers go back to the kernel on free() itself, with no trim. In a worker thread's heap
// nothing would give back what ends at the heap's top (malloc_trim trims only the main
// heap's top), which left the daemon megabytes above its idle size after a burst.
TEST_CASE("HeapTrim: buffers of 64 KiB and more go back to the kernel when freed, no trim needed",
          "[heap][figures]") {
    const splicer::daemon::HeapTrim trim;  // sets the thresholds
    std::uint64_t before = 0;
    std::uint64_t after = 0;
    // On a thread of its own, as a loop's buffers are (a heap of its own, a glibc arena).
    std::thread worker([&] {
        constexpr int kBuffers = 1000;
        constexpr std::size_t kBytes = 64 * 1024;
        std::vector<std::unique_ptr<char[]>> buffers;
        for (int i = 0; i < kBuffers; ++i) {
            buffers.push_back(std::make_unique<char[]>(kBytes));
            std::memset(buffers.back().get(), 1, kBytes);
        }
        before = resident_kib();
        buffers.clear();
        after = resident_kib();
    });
    worker.join();
    WARN("VmRSS " << before / 1024 << " -> " << after / 1024 << " MiB, no trim");
#ifndef __SANITIZE_ADDRESS__
    // (ASan's allocator ignores mallopt; scripts/test runs this case in the debug build only.)
    CHECK(before > after + 60 * 1024);  // the 64 MB went back at once
#endif
}

namespace {

// The trims `trim` has done once it did `count` (its thread trims in the background), or
// what it did within 10 s.
std::uint64_t wait_for_trims(const splicer::daemon::HeapTrim& trim, std::uint64_t count) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (trim.trims_done() < count && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return trim.trims_done();
}

}  // namespace

// The loop asked for a trim after every idle moment: with a few one-request connections at a
// time that was hundreds of trims a second, each locking every malloc arena. One second apart
// at most now, and a put-off idle trim is done by the next once-a-second tick.
TEST_CASE("HeapTrim: idle moments less than a second apart make one trim, the tick the next",
          "[heap]") {
    auto trim = std::make_unique<splicer::daemon::HeapTrim>();
    trim->after_release(0, 1);  // the first idle moment trims at once
    REQUIRE(wait_for_trims(*trim, 1) == 1);
    for (std::uint64_t closed = 2; closed < 100; ++closed) {
        trim->after_release(0, closed);  // idle again and again within the second: put off
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CHECK(trim->trims_done() == 1);
    trim->after_closes(99, 0);  // the tick: does the put-off trim
    CHECK(wait_for_trims(*trim, 2) == 2);
    trim->after_closes(99, 0);  // nothing closed and nothing owed since
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CHECK(trim->trims_done() == 2);
}

// A steady load (as many connections arriving as leaving) reuses what the closed ones freed:
// trimming it each second only made the next connections fault the pages back in. A trim is
// due once the connections held fell well below their peak since the last one.
TEST_CASE("HeapTrim: a steady load makes no trim, a fall below the peak held does", "[heap]") {
    auto trim = std::make_unique<splicer::daemon::HeapTrim>();
    constexpr std::uint32_t kSteady = 200;
    std::uint64_t closed = 0;
    // Ten ticks of churn: 500 connections close a tick, each replaced, the loop holding
    // 200 +- 20 all along.
    for (int tick = 0; tick < 10; ++tick) {
        for (int i = 0; i < 500; ++i) {
            trim->after_release(kSteady - 20 + static_cast<std::uint32_t>(i % 40), ++closed);
        }
        trim->after_closes(closed, kSteady);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CHECK(trim->trims_done() == 0);
    // The load goes down: 63 below the peak is not yet worth a pass, 64 is.
    const std::uint32_t peak = kSteady - 20 + 39 + 1;
    trim->after_closes(closed, peak - splicer::daemon::HeapTrim::kReleasedPerTrim + 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CHECK(trim->trims_done() == 0);
    trim->after_closes(closed, peak - splicer::daemon::HeapTrim::kReleasedPerTrim);
    CHECK(wait_for_trims(*trim, 1) == 1);
    // The peak starts again from what the trim left: the same level is steady again.
    trim->after_closes(closed + 100, peak - splicer::daemon::HeapTrim::kReleasedPerTrim);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CHECK(trim->trims_done() == 1);
    // The last connection gone: trimmed at the idle moment (a second after the last trim).
    std::this_thread::sleep_for(splicer::daemon::HeapTrim::kMinSpacing);
    trim->after_release(0, closed + 101);
    CHECK(wait_for_trims(*trim, 2) == 2);
}
