// The event loop's bookkeeping: completion tags and the generation-checked connection slab.

#include <catch2/catch.hpp>
#include <cstdint>
#include <set>
#include <utility>
#include <vector>

#include "daemon/event_loop.h"
#include "daemon/slab.h"
#include "uring/tag.h"

using splicer::daemon::ConnectionOp;
using splicer::daemon::HttpOp;
using splicer::daemon::LoopOp;
using splicer::daemon::Slab;
using splicer::plane::PlaneOp;
using splicer::uring::Owner;
using splicer::uring::Tag;

namespace {

template <typename Operation>
constexpr std::uint8_t code(Operation op) {
    return static_cast<std::uint8_t>(op);
}

// Every operation of every owner, as (owner, code): the loop's dispatch table. A handler's
// codes are its own (a plane's and an HTTP exchange's overlap), under either epoch parity.
std::vector<std::pair<Owner, std::uint8_t>> every_operation() {
    std::vector<std::pair<Owner, std::uint8_t>> all;
    for (unsigned op = 0; op <= code(LoopOp::cancel); ++op) {
        all.emplace_back(Owner::loop, static_cast<std::uint8_t>(op));
    }
    for (unsigned op = 0; op <= code(ConnectionOp::cancel); ++op) {
        all.emplace_back(Owner::connection, static_cast<std::uint8_t>(op));
    }
    for (std::uint8_t epoch = 0; epoch < 2; ++epoch) {
        for (unsigned op = 0; op <= code(PlaneOp::plane_hangup); ++op) {
            all.emplace_back(Owner::handler,
                             Tag::of_handler(static_cast<PlaneOp>(op), 0, epoch, 0, 0).op);
        }
    }
    return all;
}

}  // namespace

TEST_CASE("a tag survives the trip through user_data, for every owner", "[loop]") {
    auto [owner, op, arg, generation, slot] =
        GENERATE(table<Owner, std::uint8_t, std::uint8_t, std::uint16_t, std::uint32_t>({
            {Owner::loop, code(LoopOp::accept), 3, 0, 0xffffffffU},
            {Owner::loop, code(LoopOp::cancel), 255, 0, 0xffffffffU},
            {Owner::connection, code(ConnectionOp::probe_poll), 0, 1, 0},
            {Owner::connection, code(ConnectionOp::cancel), 255, 12345, 0x7fffffffU},
            {Owner::handler, code(PlaneOp::plane_send), 1, 0xffff, 16383},
            {Owner::handler, code(PlaneOp::plane_watch), 0, 2, 0xfffffffeU},
            {Owner::handler, code(HttpOp::http_recv), 1, 0xffff, 0},
            {Owner::handler, code(HttpOp::http_timeout), 0, 7, 1},
            // the widest codes the layout holds: owner 7, operation 31
            {static_cast<Owner>(7), 31, 255, 0xffff, 0xffffffffU},
        }));
    CAPTURE(static_cast<int>(owner), static_cast<int>(op), static_cast<int>(arg), generation, slot);
    const Tag tag{owner, op, arg, generation, slot};
    const Tag back = Tag::decode(tag.encode());
    CHECK(back.owner == owner);
    CHECK(back.op == op);
    CHECK(back.arg == arg);
    CHECK(back.generation == generation);
    CHECK(back.slot == slot);
}

TEST_CASE("every owner's operations fit the tag and none is mistaken for another's", "[loop]") {
    std::set<std::uint64_t> seen;
    for (const auto& [owner, op] : every_operation()) {
        CAPTURE(static_cast<int>(owner), static_cast<int>(op));
        const Tag back = Tag::decode(Tag{owner, op, 1, 2, 3}.encode());
        CHECK(back.owner == owner);
        CHECK(back.op == op);
        CHECK(seen.insert(Tag{owner, op, 1, 2, 3}.encode()).second);
    }
    CHECK(seen.size() == 5 + 5 + 2 * 8);
}

TEST_CASE("an owner reads its own operation back as its own enum", "[loop]") {
    const Tag tag = Tag::of(Owner::connection, ConnectionOp::probe_timeout, 1, 9, 42);
    const auto owned = Tag::decode(tag.encode()).owned<ConnectionOp>();
    CHECK(owned.op == ConnectionOp::probe_timeout);
    CHECK(owned.arg == 1);
}

TEST_CASE("a handler gets its own operation codes back, whatever its epoch", "[loop]") {
    for (unsigned epoch = 0; epoch < 256; ++epoch) {
        CAPTURE(epoch);
        for (unsigned op = 0; op <= code(PlaneOp::plane_hangup); ++op) {
            const Tag tag = Tag::of_handler(static_cast<PlaneOp>(op), 1,
                                            static_cast<std::uint8_t>(epoch), 9, 42);
            const Tag back = Tag::decode(tag.encode());
            CHECK(back.owner == Owner::handler);
            CHECK(back.handler_op() == op);
            CHECK(back.arg == 1);
            CHECK(back.of_handler_epoch(static_cast<std::uint8_t>(epoch)));
        }
    }
}

TEST_CASE("a completion of a replaced handler is not taken for one of its successor's", "[loop]") {
    // Port 80 after a 101: the HTTP exchange (epoch 1) is replaced by the plane (epoch 2)
    // while the exchange's linked timeout is still to complete. Its code is the plane's
    // plane_poll (both 3): only the epoch tells them apart.
    static_assert(code(HttpOp::http_timeout) == code(PlaneOp::plane_poll));
    const Tag late = Tag::decode(Tag::of_handler(HttpOp::http_timeout, 1, 1, 9, 42).encode());
    CHECK_FALSE(late.of_handler_epoch(2));
    const Tag current =
        Tag::decode(Tag::of_handler(PlaneOp::plane_poll, 1, 2, 9, 42).encode());
    CHECK(current.of_handler_epoch(2));
    CHECK(current.handler_op() == late.handler_op());
}

TEST_CASE("a plane reads its own operation back as its own enum", "[loop]") {
    const Tag tag = Tag::of_handler(PlaneOp::plane_poll, 1, 3, 9, 42);
    const Tag back = Tag::decode(tag.encode());
    CHECK(static_cast<PlaneOp>(back.handler_op()) == PlaneOp::plane_poll);
    CHECK(back.arg == 1);
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

TEST_CASE("a record holds plane state only once a plane serves it and a reused slot starts without", "[loop]") {
    Slab slab(1);
    const auto slot = slab.acquire();
    REQUIRE(slot.has_value());
    // accepted, probing, terminated or on port 80: no plane, no plane state
    CHECK_FALSE(slab.at(*slot).plane);
    splicer::plane::PlaneState& state = slab.at(*slot).make_plane_state();
    state.directions[0].bytes = 7;
    CHECK(&slab.at(*slot).make_plane_state() == &state);  // made once, then kept
    CHECK(slab.at(*slot).plane->directions[0].bytes == 7);
    slab.release(*slot);
    const auto again = slab.acquire();
    REQUIRE(again == slot);
    CHECK_FALSE(slab.at(*again).plane);  // freed with the connection, not handed on
}
