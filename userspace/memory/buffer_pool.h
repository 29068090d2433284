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
// The pool keeps at most `keep` buffers (the rest given back are freed), so what an idle
// daemon holds for them is bounded whatever burst came before. What is lent is bounded by the
// connections that have bytes waiting, not by those open.
//
// Under AddressSanitizer a kept buffer is poisoned: a connection that still wrote through a
// pointer into a buffer it had given back is reported, as a use after free would be.

#include <cstddef>
#include <memory>
#include <vector>

namespace splicer::memory {

class BufferPool {
public:
    BufferPool(std::size_t buffer_bytes, std::size_t keep);
    ~BufferPool();
    BufferPool(const BufferPool&) = delete;
    BufferPool& operator=(const BufferPool&) = delete;

    // A buffer of buffer_bytes(), the caller's from here: a kept one (the one given back last:
    // its pages are the warmest) or a new allocation, not zero-filled (a recv writes what is
    // read, and zeroing would touch every page). Throws std::bad_alloc as new does.
    std::unique_ptr<std::byte[]> take();
    // Takes back `buffer` (buffer_bytes() long, from take() of this or another pool of the
    // same size) to lend again, or frees it when `keep` are kept already. nullptr: nothing.
    // Never throws (it runs in destructors): the room for `keep` is reserved up front.
    void give_back(std::unique_ptr<std::byte[]> buffer) noexcept;

    [[nodiscard]] std::size_t buffer_bytes() const { return buffer_bytes_; }
    // Buffers kept now, ready to lend.
    [[nodiscard]] std::size_t kept() const { return kept_.size(); }

private:
    std::size_t buffer_bytes_;
    std::size_t keep_;
    std::vector<std::unique_ptr<std::byte[]>> kept_;
};

}  // namespace splicer::memory
