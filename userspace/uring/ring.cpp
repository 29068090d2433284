#include "uring/ring.h"

#include <cstring>
#include <string>

namespace splicer::uring {

Result<void> Ring::init(Ring& ring, unsigned entries) {
    io_uring_params params{};
    // One thread submits everything; the kernel need not guard against concurrent submitters,
    // and completions are only reaped when we ask (no IPI per completion).
    params.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
    int rc = io_uring_queue_init_params(entries, &ring.ring_, &params);
    if (rc == -EINVAL) {
        params = {};
        rc = io_uring_queue_init_params(entries, &ring.ring_, &params);
    }
    if (rc < 0) {
        return Error{"io_uring_queue_init: " + std::string(std::strerror(-rc))};
    }
    ring.initialised_ = true;
    return {};
}

Ring::~Ring() {
    if (initialised_) {
        io_uring_queue_exit(&ring_);
    }
}

io_uring_sqe* Ring::sqe() {
    io_uring_sqe* entry = io_uring_get_sqe(&ring_);
    while (entry == nullptr) {
        io_uring_submit(&ring_);
        entry = io_uring_get_sqe(&ring_);
    }
    return entry;
}

int Ring::submit_and_wait(int timeout_ms) {
    __kernel_timespec timeout{};
    timeout.tv_sec = timeout_ms / 1000;
    timeout.tv_nsec = static_cast<long long>(timeout_ms % 1000) * 1'000'000;
    io_uring_cqe* cqe = nullptr;
    const int rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &timeout, nullptr);
    return rc == -ETIME || rc == -EINTR ? 0 : rc;
}

}  // namespace splicer::uring
