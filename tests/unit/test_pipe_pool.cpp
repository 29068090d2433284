// The splice plane's pipe pool: at most max_in_use out at once, empties reused, shortages
// counted, a pipe that may hold bytes never handed out again.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <optional>
#include <vector>

#include "plane/pipe_pool.h"

using splicer::plane::Pipe;
using splicer::plane::PipePool;

namespace {

bool empty_and_non_blocking(const Pipe& pipe) {
    char byte = 0;
    return ::read(pipe.read.get(), &byte, 1) == -1 && errno == EAGAIN &&
           (::fcntl(pipe.write.get(), F_GETFL) & O_NONBLOCK) != 0;
}

}  // namespace

TEST_CASE("pipe pool: the budget bounds pipes out at once, a shortage is counted", "[pipes]") {
    PipePool pool(3, 1 << 20);
    std::vector<Pipe> taken;
    for (int i = 0; i < 3; ++i) {
        std::optional<Pipe> pipe = pool.take();
        REQUIRE(pipe.has_value());
        CHECK(empty_and_non_blocking(*pipe));
        CHECK(::fcntl(pipe->write.get(), F_GETPIPE_SZ) == 1 << 20);
        taken.push_back(std::move(*pipe));
    }
    CHECK(pool.in_use() == 3);
    CHECK_FALSE(pool.take().has_value());
    CHECK_FALSE(pool.take().has_value());
    CHECK(pool.shortages() == 2);

    // Given back, a pipe is reused (same fds), not made again.
    const int reused_read = taken.back().read.get();
    pool.give_back(std::move(taken.back()));
    taken.pop_back();
    CHECK(pool.in_use() == 2);
    CHECK(pool.spares() == 1);
    std::optional<Pipe> again = pool.take();
    REQUIRE(again.has_value());
    CHECK(again->read.get() == reused_read);
    CHECK(pool.spares() == 0);
    CHECK(pool.shortages() == 2);
}

TEST_CASE("pipe pool: a discarded pipe is closed and frees its place", "[pipes]") {
    PipePool pool(1, 1 << 16);
    std::optional<Pipe> pipe = pool.take();
    REQUIRE(pipe.has_value());
    REQUIRE(::write(pipe->write.get(), "left", 4) == 4);  // its connection ended mid-round
    const int read_fd = pipe->read.get();
    pool.discard(std::move(*pipe));
    CHECK(pool.in_use() == 0);
    CHECK(pool.spares() == 0);
    CHECK(::fcntl(read_fd, F_GETFD) == -1);  // closed
    std::optional<Pipe> fresh = pool.take();
    REQUIRE(fresh.has_value());
    CHECK(empty_and_non_blocking(*fresh));
}

TEST_CASE("pipe pool: spares are capped, the rest closed", "[pipes]") {
    const auto count = static_cast<std::uint32_t>(PipePool::kSpares + 5);
    PipePool pool(count, 1 << 16);
    std::vector<Pipe> taken;
    for (std::uint32_t i = 0; i < count; ++i) {
        std::optional<Pipe> pipe = pool.take();
        REQUIRE(pipe.has_value());
        taken.push_back(std::move(*pipe));
    }
    for (Pipe& pipe : taken) {
        pool.give_back(std::move(pipe));
    }
    CHECK(pool.in_use() == 0);
    CHECK(pool.spares() == PipePool::kSpares);
}
