// The event loop's bookkeeping: completion tags and the generation-checked connection slab.

#include <catch2/catch.hpp>

#include "daemon/slab.h"
#include "uring/tag.h"

using splicer::daemon::Slab;
using splicer::uring::Op;
using splicer::uring::Tag;

TEST_CASE("a tag survives the trip through user_data", "[loop]") {
    auto [op, arg, generation, slot] = GENERATE(table<Op, std::uint8_t, std::uint16_t, std::uint32_t>({
        {Op::accept, 3, 0, 0xffffffffU},
        {Op::probe_poll, 0, 1, 0},
        {Op::plane_send, 1, 0xffff, 16383},
        {Op::cancel, 255, 12345, 0x7fffffffU},
    }));
    const Tag tag{op, arg, generation, slot};
    const Tag back = Tag::decode(tag.encode());
    CHECK(back.op == op);
    CHECK(back.arg == arg);
    CHECK(back.generation == generation);
    CHECK(back.slot == slot);
}

TEST_CASE("a reused slot has a new generation, so late completions are recognised", "[loop]") {
    Slab slab(2);
    const auto first = slab.acquire();
    REQUIRE(first.has_value());
    const std::uint16_t old_generation = slab.at(*first).generation;
    CHECK(slab.find(*first, old_generation) != nullptr);
    slab.release(*first);
    CHECK(slab.find(*first, old_generation) == nullptr);

    const auto again = slab.acquire();
    const auto other = slab.acquire();
    REQUIRE((again.has_value() && other.has_value()));
    CHECK_FALSE(slab.acquire().has_value());  // full: the newest is refused
    const std::uint16_t new_generation = slab.at(*first).generation;
    CHECK(new_generation != old_generation);
    CHECK(slab.find(*first, old_generation) == nullptr);
    CHECK(slab.find(*first, new_generation) != nullptr);
    CHECK(slab.at(*again).slot == *again);
    CHECK(slab.in_use() == 2);
}
