#include "plane/pipe_pool.h"

#include <fcntl.h>
#include <unistd.h>

#include <utility>

namespace splicer::plane {

PipePool::PipePool(std::uint32_t max_in_use, int pipe_bytes)
    : max_in_use_(max_in_use), pipe_bytes_(pipe_bytes) {}

std::optional<Pipe> PipePool::take() {
    if (in_use_ >= max_in_use_) {
        ++shortages_;
        return std::nullopt;
    }
    if (!spares_.empty()) {
        Pipe pipe = std::move(spares_.back());
        spares_.pop_back();
        ++in_use_;
        return pipe;
    }
    int fds[2] = {-1, -1};
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        ++shortages_;
        return std::nullopt;
    }
    Pipe pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
    // A refusal (over /proc/sys/fs/pipe-max-size, or the user's pipe quota) keeps 64 KiB.
    ::fcntl(pipe.write.get(), F_SETPIPE_SZ, pipe_bytes_);
    ++in_use_;
    return pipe;
}

void PipePool::give_back(Pipe pipe) {
    --in_use_;
    if (spares_.size() < kSpares) {
        spares_.push_back(std::move(pipe));
    }
}

void PipePool::discard(Pipe pipe) {
    --in_use_;
    (void)pipe;  // closed here, on leaving scope
}

}  // namespace splicer::plane
