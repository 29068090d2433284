#include "uring/ring.h"

#include <sched.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "log/line_queue.h"
#include "splicer/log.h"

namespace splicer::uring {
namespace {

// Tries of io_uring_submit() for one SQE before the ring counts as broken. Each try that
// takes nothing first frees the completion queue; a ring that still takes nothing after
// this many is not coming back.
constexpr int kSubmitTries = 64;

[[noreturn]] void fatal(const std::string& why) {
    log::error("fatal", {{"error", why}});
    log::stop_writer();  // bounded: the line goes out if stderr takes it
    std::abort();
}

}  // namespace

Result<void> Ring::init(Ring& ring, unsigned entries, unsigned extra_flags) {
    io_uring_params params{};
    // One thread submits everything; the kernel need not guard against concurrent submitters,
    // and completions are only reaped when we ask (no IPI per completion).
    params.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | extra_flags;
    int rc = io_uring_queue_init_params(entries, &ring.ring_, &params);
    if (rc == -EINVAL) {
        params = {};
        params.flags = extra_flags;
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

void Ring::set_aside_completions() {
    unsigned head = 0;
    unsigned count = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(&ring_, head, cqe) {
        deferred_.push_back({.user_data = cqe->user_data, .res = cqe->res, .flags = cqe->flags});
        ++count;
    }
    io_uring_cq_advance(&ring_, count);
}

io_uring_sqe* Ring::sqe() {
    for (int tries = 0; tries < kSubmitTries; ++tries) {
        if (io_uring_sqe* entry = io_uring_get_sqe(&ring_)) {
            return entry;
        }
        const int rc = io_uring_submit(&ring_);
        if (rc > 0 || rc == -EINTR) {
            continue;
        }
        // Nothing taken. EBUSY: the completion queue (and its overflow) is full, so the
        // kernel takes no new work until completions are reaped (older kernels; Linux 6.18
        // keeps overflowing into kernel memory instead: measured, 100,000 NOPs into a
        // 4-entry ring never got EBUSY). EAGAIN: no memory for requests right now. Either
        // way, reap what completed (handled at the next drain, in order) and try again.
        if (rc == 0 || rc == -EBUSY || rc == -EAGAIN) {
            set_aside_completions();
            if (tries > 0) {
                ::sched_yield();  // let the kernel's work (task work, memory reclaim) run
            }
            continue;
        }
        fatal("io_uring_submit: " + std::string(std::strerror(-rc)));
    }
    fatal("io_uring_submit took no submission in " + std::to_string(kSubmitTries) + " tries");
}

int Ring::submit_and_wait(int timeout_ms) {
    __kernel_timespec timeout{};
    timeout.tv_sec = timeout_ms / 1000;
    timeout.tv_nsec = static_cast<long long>(timeout_ms % 1000) * 1'000'000;
    io_uring_cqe* cqe = nullptr;
    // Completions set aside by sqe() are waiting already: do not sleep on the ring for more.
    const unsigned wait_for = deferred_.empty() ? 1 : 0;
    const int rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, wait_for, &timeout, nullptr);
    return rc == -ETIME || rc == -EINTR ? 0 : rc;
}

}  // namespace splicer::uring
