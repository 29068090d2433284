#pragma once
// Ring: the one owner of the daemon's io_uring (liburing). Not movable: SQEs and completions
// refer to it by address for its whole life.

#include <liburing.h>

#include <cstdint>
#include <vector>

#include "splicer/result.h"

namespace splicer::uring {

// What the loop reads of a completion, copied out of the ring: io_uring_cqe itself ends in a
// flexible array member (big_cqe, for IORING_SETUP_CQE32, which this ring does not use), so
// it cannot be an array element.
struct Completion {
    std::uint64_t user_data = 0;
    std::int32_t res = 0;
    std::uint32_t flags = 0;
};

class Ring {
public:
    // `extra_flags`: IORING_SETUP_* added to the ring's own (tests: IORING_SETUP_R_DISABLED
    // makes every submit fail, as a broken ring would).
    static Result<void> init(Ring& ring, unsigned entries, unsigned extra_flags = 0);

    Ring() = default;
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;
    ~Ring();

    // A free SQE; when the submission queue is full it is submitted first to make room. When
    // the kernel takes none (EBUSY, EAGAIN: no room for completions, no memory for requests)
    // ready completions are set aside for the next drain() and it tries again, a bounded
    // number of times. A ring that cannot submit at all (any other error, or no progress
    // after those tries) is fatal: the daemon cannot go on without it, and retrying forever
    // would spin. It aborts with a message naming the error.
    io_uring_sqe* sqe();
    // Submits queued SQEs and waits for at least one completion (or `timeout_ms`).
    int submit_and_wait(int timeout_ms);

    // Calls `handle(completion)` for each ready completion (those sqe() set aside first, in order),
    // then marks them seen, one cq_advance per batch. `handle` may call sqe().
    template <typename Handler>
    unsigned drain(Handler&& handle) {
        unsigned seen = 0;
        // sqe() may set completions aside while a batch is handled: take them in turn.
        for (int round = 0; round < kMaxDrainRounds; ++round) {
            if (!deferred_.empty()) {
                std::vector<Completion> batch;
                batch.swap(deferred_);
                for (const Completion& completion : batch) {
                    handle(completion);
                }
                seen += static_cast<unsigned>(batch.size());
                continue;
            }
            // Copied out and marked seen before any is handled, so a handler's sqe() that
            // sets completions aside can only take later ones.
            Completion batch[kDrainBatch];
            unsigned count = 0;
            unsigned head = 0;
            io_uring_cqe* cqe = nullptr;
            io_uring_for_each_cqe(&ring_, head, cqe) {
                batch[count++] = {
                    .user_data = cqe->user_data, .res = cqe->res, .flags = cqe->flags};
                if (count == kDrainBatch) {
                    break;
                }
            }
            if (count == 0) {
                break;
            }
            io_uring_cq_advance(&ring_, count);
            for (unsigned i = 0; i < count; ++i) {
                handle(batch[i]);
            }
            seen += count;
        }
        return seen;
    }

    // Completions set aside by sqe(), not yet handed to drain() (for tests).
    [[nodiscard]] std::size_t deferred() const { return deferred_.size(); }

private:
    static constexpr unsigned kDrainBatch = 256;
    // A drain hands over at most this many batches, so timers and counters still run under a
    // flood of completions.
    static constexpr int kMaxDrainRounds = 64;

    // Moves every ready completion to deferred_, freeing the completion queue.
    void set_aside_completions();

    io_uring ring_{};
    bool initialised_ = false;
    std::vector<Completion> deferred_;
};

}  // namespace splicer::uring
