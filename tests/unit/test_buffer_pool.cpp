// memory::BufferPool (memory/buffer_pool.h): a buffer given back is lent again before any new
// one is made, the warmest first; the pool keeps no more than its bound; a buffer from
// another pool of the same size is taken back like its own.

#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "memory/buffer_pool.h"

namespace splicer::test {

TEST_CASE("buffer pool: a buffer given back is lent again, the warmest first", "[memory]") {
    memory::BufferPool pool(4096, 4);
    std::unique_ptr<std::byte[]> first = pool.take();
    std::unique_ptr<std::byte[]> second = pool.take();
    REQUIRE(first);
    REQUIRE(second);
    CHECK(first.get() != second.get());
    CHECK(pool.kept() == 0);
    std::memset(first.get(), 'a', pool.buffer_bytes());  // the whole buffer is the taker's

    std::byte* const first_memory = first.get();
    std::byte* const second_memory = second.get();
    pool.give_back(std::move(first));
    pool.give_back(std::move(second));
    CHECK(pool.kept() == 2);
    // The one given back last comes first.
    const std::unique_ptr<std::byte[]> again = pool.take();
    CHECK(again.get() == second_memory);
    const std::unique_ptr<std::byte[]> and_again = pool.take();
    CHECK(and_again.get() == first_memory);
    CHECK(pool.kept() == 0);
    // Nothing kept: a new one.
    const std::unique_ptr<std::byte[]> fresh = pool.take();
    CHECK(fresh);
}

TEST_CASE("buffer pool: no more than its bound is kept, the rest is freed", "[memory]") {
    memory::BufferPool pool(1024, 2);
    std::vector<std::unique_ptr<std::byte[]>> many;
    for (int i = 0; i < 10; ++i) {
        many.push_back(pool.take());
    }
    for (auto& buffer : many) {
        pool.give_back(std::move(buffer));
    }
    CHECK(pool.kept() == 2);
    pool.give_back(nullptr);  // nothing to take back
    CHECK(pool.kept() == 2);
}

TEST_CASE("buffer pool: a buffer that moved with its connection goes back to the new pool",
          "[memory]") {
    memory::BufferPool first_loop(1024, 4);
    memory::BufferPool second_loop(1024, 4);
    std::unique_ptr<std::byte[]> buffer = first_loop.take();
    std::byte* const memory = buffer.get();
    second_loop.give_back(std::move(buffer));
    CHECK(first_loop.kept() == 0);
    CHECK(second_loop.kept() == 1);
    CHECK(second_loop.take().get() == memory);
}

}  // namespace splicer::test
