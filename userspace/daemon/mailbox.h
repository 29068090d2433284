#pragma once
// Work handed to an event loop from another thread (`workers`: a reload's new rules, a
// stop). Another thread must never touch a loop's state; it posts a closure instead, and
// the loop runs it between two completions, on its own thread, once the eventfd it reads
// through its ring becomes readable. So a closure never runs in the middle of a decision.

#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "splicer/result.h"
#include "splicer/unique_fd.h"

namespace splicer::daemon {

class Mailbox {
public:
    using Work = std::function<void()>;

    // Makes the eventfd.
    Result<void> init();

    // From any thread: queues `work` and wakes the loop.
    void post(Work work);

    // The eventfd the loop reads, and where it reads its counter into.
    [[nodiscard]] int wake_fd() const { return wake_.get(); }
    [[nodiscard]] std::uint64_t* wake_buffer() { return &wake_count_; }

    // On the loop, after the eventfd was read: runs everything posted so far, in order.
    void run_posted();

private:
    UniqueFd wake_;
    std::uint64_t wake_count_ = 0;
    std::mutex mutex_;
    std::vector<Work> posted_;
};

}  // namespace splicer::daemon
