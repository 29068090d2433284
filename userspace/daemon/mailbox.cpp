#include "daemon/mailbox.h"

#include <sys/eventfd.h>
#include <unistd.h>

namespace splicer::daemon {

Result<void> Mailbox::init() {
    wake_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_) {
        return errno_error("eventfd (mailbox)");
    }
    return {};
}

void Mailbox::post(Work work) {
    {
        const std::lock_guard lock(mutex_);
        posted_.push_back(std::move(work));
    }
    const std::uint64_t one = 1;
    // Non-blocking: only a counter at its maximum refuses, and a counter that high is
    // readable anyway, so the loop wakes either way.
    [[maybe_unused]] const ssize_t written = ::write(wake_.get(), &one, sizeof(one));
}

void Mailbox::run_posted() {
    std::vector<Work> work;
    {
        const std::lock_guard lock(mutex_);
        work.swap(posted_);
    }
    for (Work& item : work) {
        item();
    }
}

}  // namespace splicer::daemon
