#pragma once
// Spare fixed-size I/O buffers, one pool per event loop (single-threaded: no lock), so that a
// connection holds a buffer only while bytes wait in it. A connection that waits for its peer
// gives its buffer back; the next busy connection takes the same memory again, already
// mapped and warm, instead of a malloc() that may hand out a chunk another connection left
// with dirty pages scattered over the heap.
//
// A buffer taken is the taker's own (a unique_ptr): giving it back is how it is reused, not
// a duty. An owner destroyed with its buffer simply frees it, so no owner has to outlive the
// pool or the pool its owners, and a buffer may move to another loop with its connection and
// be given back to that loop's pool (all buffers of one size are alike).
//
// How many are kept follows the load. A buffer has pages of its own (daemon/heap_trim.cpp:
// kMmapThresholdBytes), so one freed and made again costs an munmap, an mmap and a page
// fault per page touched: with a fixed 16 spares, an HTTP loop with many requests in flight
// paid that on most requests (README "Memory after a burst" has the figures). So the pool
// keeps, beyond its `floor` and up to its `ceiling`, as many as the load's swing: the most
// by which the buffers out rose or fell within this period or the one before (the loop ends
// a period about once a second: end_period()). A load whose buffers out swing between 100
// and 150 keeps 50 spare, and takes every buffer from them; once the load is gone, the
// period it left in keeps what came back, and two periods later the pool is back to `floor`:
// an idle daemon's memory for them is bounded whatever burst came before, and comes back
// within seconds.
//
// The swing is counted from the takes and give-backs of each period, not from a count of
// buffers out: a buffer freed with its owner (a connection that ended with bytes in it) or
// given back to another loop's pool is never given back here, and a count kept since the
// start would drift with every one of them.
//
// Under AddressSanitizer a kept buffer is poisoned: a connection that still wrote through a
// pointer into a buffer it had given back is reported, as a use after free would be.

#include <cstddef>
#include <memory>
#include <vector>

namespace splicer::memory {

class BufferPool {
public:
    // Keeps `floor` spares whatever the load, and up to `ceiling` (>= floor) when the load
    // swings (above); floor == ceiling: a fixed number, and end_period() is not needed.
    BufferPool(std::size_t buffer_bytes, std::size_t floor, std::size_t ceiling);
    ~BufferPool();
    BufferPool(const BufferPool&) = delete;
    BufferPool& operator=(const BufferPool&) = delete;

    // A buffer of buffer_bytes(), the caller's from here: a kept one (the one given back last:
    // its pages are the warmest) or a new allocation, not zero-filled (a recv writes what is
    // read, and zeroing would touch every page). Throws std::bad_alloc as new does.
    std::unique_ptr<std::byte[]> take();
    // Takes back `buffer` (buffer_bytes() long, from take() of this or another pool of the
    // same size) to lend again, or frees it when the pool keeps its share already (above).
    // nullptr: nothing. Never throws (it runs in destructors): no room to keep it, it frees.
    void give_back(std::unique_ptr<std::byte[]> buffer) noexcept;
    // Ends the period (the loop calls it about once a second): the swing of the period
    // before this one no longer counts, and the spares beyond the floor and the swing of
    // the last two periods are freed, the coldest first.
    void end_period() noexcept;

    [[nodiscard]] std::size_t buffer_bytes() const { return buffer_bytes_; }
    // Buffers kept now, ready to lend.
    [[nodiscard]] std::size_t kept() const { return kept_.size(); }
    // The most it keeps now: its floor, or the swing of this period and the last, up to its
    // ceiling.
    [[nodiscard]] std::size_t keep_bound() const;

private:
    void free_beyond(std::size_t kept_at_most) noexcept;

    std::size_t buffer_bytes_;
    std::size_t floor_;
    std::size_t ceiling_;
    // Takes minus give-backs since the period began, and the highest and lowest it went.
    std::ptrdiff_t net_taken_ = 0;
    std::ptrdiff_t net_high_ = 0;
    std::ptrdiff_t net_low_ = 0;
    std::size_t last_swing_ = 0;                      // net_high_ - net_low_ of the period before
    std::vector<std::unique_ptr<std::byte[]>> kept_;  // the warmest (given back last) at the back
};

}  // namespace splicer::memory
