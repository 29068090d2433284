#pragma once
// Ring: the one owner of the daemon's io_uring (liburing). Not movable: SQEs and completions
// refer to it by address for its whole life.

#include <liburing.h>

#include "splicer/result.h"

namespace splicer::uring {

class Ring {
public:
    static Result<void> init(Ring& ring, unsigned entries);

    Ring() = default;
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;
    ~Ring();

    // A free SQE; when the submission queue is full it is submitted first to make room.
    io_uring_sqe* sqe();
    // Submits queued SQEs and waits for at least one completion (or `timeout_ms`).
    int submit_and_wait(int timeout_ms);

    // Calls `handle(cqe)` for each ready completion, then marks them all seen at once.
    template <typename Handler>
    unsigned drain(Handler&& handle) {
        unsigned head = 0;
        unsigned seen = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(&ring_, head, cqe) {
            handle(*cqe);
            ++seen;
        }
        io_uring_cq_advance(&ring_, seen);
        return seen;
    }

private:
    io_uring ring_{};
    bool initialised_ = false;
};

}  // namespace splicer::uring
