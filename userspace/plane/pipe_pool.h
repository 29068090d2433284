#pragma once
// The splice plane's pipes: taken by a direction when bytes are ready to move and given back
// once the pipe is empty again, so an idle connection holds no pipe (2 fds, not 6) and the
// fds a daemon needs are 2 per connection plus 2 per pipe in use. At most `max_in_use` are
// out at once (the fd budget); a few empty ones are kept for reuse, so a busy direction does
// not pay pipe2() + F_SETPIPE_SZ on every round.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "splicer/unique_fd.h"

namespace splicer::plane {

struct Pipe {
    UniqueFd read;
    UniqueFd write;
};

class PipePool {
public:
    // `pipe_bytes`: the capacity F_SETPIPE_SZ asks for (the kernel may give less).
    PipePool(std::uint32_t max_in_use, int pipe_bytes);

    // An empty pipe, or nullopt when `max_in_use` are out (a shortage, counted) or the
    // kernel refuses a new one (EMFILE, ENFILE, ENOMEM: also counted).
    std::optional<Pipe> take();
    // `pipe` is empty again: kept for reuse (up to kSpares) or closed.
    void give_back(Pipe pipe);
    // A pipe that may still hold bytes (its connection ended mid-round): closed, never reused.
    void discard(Pipe pipe);
    // handoff: a pipe in use left with its connection (it now counts nowhere here), or one
    // came with an adopted connection (it counts as taken from here, and comes back by
    // give_back or discard like any other; the fd budget may be passed for a while).
    void handed_away() {
        if (in_use_ > 0) {
            --in_use_;
        }
    }
    void adopted() { ++in_use_; }
    // Closes the spares: the plane has no connection left, an idle daemon holds no pipe.
    void drop_spares() { spares_.clear(); }

    [[nodiscard]] std::uint32_t in_use() const { return in_use_; }
    [[nodiscard]] std::size_t spares() const { return spares_.size(); }
    [[nodiscard]] std::uint64_t shortages() const { return shortages_; }

    static constexpr std::size_t kSpares = 32;

private:
    std::uint32_t max_in_use_;
    int pipe_bytes_;
    std::uint32_t in_use_ = 0;
    std::uint64_t shortages_ = 0;
    std::vector<Pipe> spares_;
};

}  // namespace splicer::plane
