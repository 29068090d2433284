// memory::BufferPool (memory/buffer_pool.h): a buffer given back is lent again before any new
// one is made, the warmest first; a fixed pool keeps no more than its bound; a buffer from
// another pool of the same size is taken back like its own; a pool that follows the load
// keeps the load's swing, lends from it without new buffers, and is back to its floor two
// periods after the load is gone. And the two string holders of the records every connection
// keeps (memory/compact_string.h, memory/rare_string.h): what they hold reads back whole
// whatever its length, in the bytes they promise.

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "memory/buffer_pool.h"
#include "memory/compact_string.h"
#include "memory/rare_string.h"

namespace splicer::test {
namespace {

using Buffers = std::vector<std::unique_ptr<std::byte[]>>;

Buffers take(memory::BufferPool& pool, std::size_t count) {
    Buffers taken;
    for (std::size_t i = 0; i < count; ++i) {
        taken.push_back(pool.take());
    }
    return taken;
}

// Gives back the last `count` of `buffers`.
void give_back(memory::BufferPool& pool, Buffers& buffers, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
        pool.give_back(std::move(buffers.back()));
        buffers.pop_back();
    }
}

std::set<const std::byte*> addresses(const Buffers& buffers) {
    std::set<const std::byte*> result;
    for (const auto& buffer : buffers) {
        result.insert(buffer.get());
    }
    return result;
}

}  // namespace

TEST_CASE("buffer pool: a buffer given back is lent again, the warmest first", "[memory]") {
    memory::BufferPool pool(4096, 4, 4);
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

TEST_CASE("buffer pool: a fixed pool keeps no more than its bound, the rest is freed", "[memory]") {
    memory::BufferPool pool(1024, 2, 2);
    Buffers many = take(pool, 10);
    give_back(pool, many, 10);
    CHECK(pool.kept() == 2);
    CHECK(pool.keep_bound() == 2);
    pool.give_back(nullptr);  // nothing to take back
    CHECK(pool.kept() == 2);
    pool.end_period();
    CHECK(pool.kept() == 2);
}

TEST_CASE("buffer pool: a buffer that moved with its connection goes back to the new pool",
          "[memory]") {
    memory::BufferPool first_loop(1024, 4, 64);
    memory::BufferPool second_loop(1024, 4, 64);
    std::unique_ptr<std::byte[]> buffer = first_loop.take();
    std::byte* const memory = buffer.get();
    second_loop.give_back(std::move(buffer));
    CHECK(first_loop.kept() == 0);
    CHECK(second_loop.kept() == 1);
    CHECK(second_loop.take().get() == memory);
}

TEST_CASE("buffer pool: a load swinging above its floor is lent only buffers it gave back",
          "[memory]") {
    // 100 buffers out for good, and 50 more taken and given back over and over across
    // periods, as an HTTP loop's exchanges do: past the first swing, no new buffer.
    memory::BufferPool pool(1024, 4, 1000);
    Buffers steady = take(pool, 100);
    Buffers swinging = take(pool, 50);
    give_back(pool, swinging, 50);
    CHECK(pool.kept() == 50);
    const std::set<const std::byte*> known = [&] {
        Buffers again = take(pool, 50);
        auto seen = addresses(again);
        give_back(pool, again, 50);
        return seen;
    }();
    for (int period = 0; period < 5; ++period) {
        for (int round = 0; round < 3; ++round) {
            Buffers again = take(pool, 50);
            CHECK(addresses(again) == known);
            give_back(pool, again, 50);
        }
        pool.end_period();
        CHECK(pool.kept() == 50);
    }
    CHECK(pool.keep_bound() == 50);
    give_back(pool, steady, 100);
}

TEST_CASE("buffer pool: after a burst the spares go back to the floor two periods later",
          "[memory]") {
    memory::BufferPool pool(1024, 4, 1000);
    Buffers burst = take(pool, 300);
    give_back(pool, burst, 300);
    CHECK(pool.kept() == 300);  // the period's swing: ready for the burst to come back
    pool.end_period();
    CHECK(pool.kept() == 300);  // the period it left in still counts
    pool.end_period();
    CHECK(pool.kept() == 4);  // idle since: the floor
    CHECK(pool.keep_bound() == 4);
    pool.end_period();
    CHECK(pool.kept() == 4);
}

TEST_CASE("buffer pool: a load that falls keeps only its new swing", "[memory]") {
    // 200 out, then the load settles at 100 swinging by 10: after two periods the pool keeps
    // that swing, not the 100 the fall gave back.
    memory::BufferPool pool(1024, 4, 1000);
    Buffers out = take(pool, 200);
    pool.end_period();
    give_back(pool, out, 100);
    CHECK(pool.kept() == 100);
    pool.end_period();
    for (int period = 0; period < 2; ++period) {
        Buffers swinging = take(pool, 10);
        give_back(pool, swinging, 10);
        pool.end_period();
    }
    CHECK(pool.kept() == 10);
    give_back(pool, out, 100);
}

TEST_CASE("buffer pool: the ceiling bounds the spares whatever the swing", "[memory]") {
    memory::BufferPool pool(1024, 4, 32);
    Buffers burst = take(pool, 100);
    give_back(pool, burst, 100);
    CHECK(pool.kept() == 32);
    CHECK(pool.keep_bound() == 32);
}

TEST_CASE("buffer pool: buffers that never come back do not raise what is kept", "[memory]") {
    // Connections that end with bytes in their buffers free them with themselves. Counted
    // from the takes and give-backs of each period, they move no later period's bound.
    memory::BufferPool pool(1024, 4, 1000);
    for (int period = 0; period < 20; ++period) {
        Buffers lost = take(pool, 10);  // freed here, never given back
        Buffers swinging = take(pool, 2);
        give_back(pool, swinging, 2);
        pool.end_period();
    }
    pool.end_period();
    CHECK(pool.keep_bound() == 4);
    CHECK(pool.kept() <= 4);
}

TEST_CASE("compact string: 15 bytes inline, longer ones on the heap, each read back whole",
          "[memory]") {
    STATIC_REQUIRE((sizeof(void*) != 8 || sizeof(memory::CompactString) == 16));
    memory::CompactString text;
    CHECK(text.empty());
    CHECK(text.view().empty());
    // Each length around the inline limit, then back down: the heap text is freed (ASan).
    const std::string long_name(255, 'n');
    for (const std::string_view value :
         {std::string_view("tls"), std::string_view("fifteen-bytes.x"),
          std::string_view("sixteen-bytes.xy"), std::string_view(long_name), std::string_view("h2"),
          std::string_view("")}) {
        text = value;
        CHECK(text.view() == value);
        CHECK(text.size() == value.size());
        CHECK(text.empty() == value.empty());
        CHECK(std::string(text) == value);
    }
    // Copies are deep, moves leave the source empty, and a text set from its own bytes holds.
    text = std::string_view(long_name);
    memory::CompactString copy = text;
    text = std::string_view("other");
    CHECK(copy.view() == long_name);
    memory::CompactString moved = std::move(copy);
    CHECK(moved.view() == long_name);
    CHECK(copy.empty());  // NOLINT(bugprone-use-after-move): a moved-from one is empty
    moved = moved.view().substr(1, 20);
    CHECK(moved.view() == std::string(20, 'n'));
    moved = moved.view().substr(2, 3);
    CHECK(moved.view() == "nnn");
    CHECK(moved.substr(1) == "nn");
}

TEST_CASE(
    "rare string: 8 bytes that hold nothing until a text is set, and nothing after an "
    "empty one",
    "[memory]") {
    STATIC_REQUIRE((sizeof(void*) != 8 || sizeof(memory::RareString) == 8));
    memory::RareString text;
    CHECK(text.empty());
    CHECK(text.str().empty());
    text = "TLS: certificate unknown";
    CHECK_FALSE(text.empty());
    CHECK(text.view() == "TLS: certificate unknown");
    const memory::RareString copy = text;
    text = std::string_view();
    CHECK(text.empty());
    CHECK(copy.str() == "TLS: certificate unknown");
    const std::string_view read = copy;
    CHECK(read == "TLS: certificate unknown");
}

}  // namespace splicer::test
