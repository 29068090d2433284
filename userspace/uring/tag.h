#pragma once
// What an io_uring completion is about, packed into its 64-bit user_data: which owner handles
// it (the loop itself, the connection's probe/connect phase, the connection's handler: its
// data plane or its HTTP exchange), that owner's own operation code, a small argument (which
// direction, which listener), the connection's slab slot and that slot's generation, so a late
// completion for a reused slot is recognised and dropped. Each owner defines its operations in its
// own header (daemon/event_loop.h, daemon/connection.h, and each handler's: plane/data_plane.h,
// daemon/http_exchange.h); the loop finds the owner and hands it (operation, arg, result,
// flags).
//
// Layout, low bits first: owner (3 bits), operation (5 bits), arg (8), generation (16),
// slot (32).

#include <cstdint>
#include <type_traits>

namespace splicer::uring {

enum class Owner : std::uint8_t {
    loop,        // no connection: accept, signals, reloads, the accept backoff
    connection,  // the connection's own phases: probing, connecting, cancels
    // its handler (daemon/connection_handler.h): a data plane or an HTTP exchange, each with
    // its own operation codes (below kHandlerOperations)
    handler,
    // the loop's pool of idle backend connections (daemon/backend_pool.h): `slot` and
    // `generation` name a pool entry, not a connection
    pool,
};

inline constexpr unsigned kOwnerBits = 3;
inline constexpr unsigned kOperationBits = 5;
// An owner's operation codes must stay below this (checked where each owner defines them).
inline constexpr unsigned kOperationsPerOwner = 1U << kOperationBits;

// True when every code of an owner's operation enum, up to `last`, fits in the tag.
template <typename Operation>
constexpr bool fits_in_tag(Operation last) {
    static_assert(std::is_enum_v<Operation>);
    return static_cast<unsigned>(last) < kOperationsPerOwner;
}

// Owner::handler: a connection's handler can be replaced while operations of the one before
// are still in flight (port 80 after a 101: the HTTP exchange's linked timeout completes
// after the plane took over). So the top bit of a handler's operation field is the parity of
// the handler's epoch (Connection::handler_epoch, one step per handler installed): a
// completion of the handler replaced is recognised and not taken for one of its successor's
// own operations. A handler's codes stay below kHandlerOperations.
inline constexpr unsigned kHandlerOperations = kOperationsPerOwner / 2;

template <typename Operation>
constexpr bool fits_in_handler_tag(Operation last) {
    static_assert(std::is_enum_v<Operation>);
    return static_cast<unsigned>(last) < kHandlerOperations;
}

// What an owner is handed: its own operation code and the argument it tagged it with.
template <typename Operation>
struct OwnedTag {
    Operation op{};
    std::uint8_t arg = 0;
};

struct Tag {
    Owner owner = Owner::loop;
    std::uint8_t op = 0;  // the owner's operation code (its own enum)
    std::uint8_t arg = 0;
    std::uint16_t generation = 0;
    std::uint32_t slot = 0;

    template <typename Operation>
    static Tag of(Owner owner, Operation op, std::uint8_t arg, std::uint16_t generation,
                  std::uint32_t slot) {
        return Tag{owner, static_cast<std::uint8_t>(op), arg, generation, slot};
    }

    // An operation of the connection's handler of epoch `epoch`.
    template <typename Operation>
    static Tag of_handler(Operation op, std::uint8_t arg, std::uint8_t epoch,
                          std::uint16_t generation, std::uint32_t slot) {
        const auto code = static_cast<unsigned>(op) | ((epoch & 1U) != 0 ? kHandlerOperations : 0U);
        return Tag{Owner::handler, static_cast<std::uint8_t>(code), arg, generation, slot};
    }
    // Owner::handler: was it submitted by the handler of epoch `epoch` (the current one)?
    [[nodiscard]] bool of_handler_epoch(std::uint8_t epoch) const {
        return ((op & kHandlerOperations) != 0) == ((epoch & 1U) != 0);
    }
    // Owner::handler: the handler's own operation code, without the epoch bit.
    [[nodiscard]] std::uint8_t handler_op() const {
        return static_cast<std::uint8_t>(op & (kHandlerOperations - 1U));
    }

    // The owner's view: its operation code as its own enum.
    template <typename Operation>
    [[nodiscard]] OwnedTag<Operation> owned() const {
        return OwnedTag<Operation>{static_cast<Operation>(op), arg};
    }

    [[nodiscard]] std::uint64_t encode() const {
        const auto head = static_cast<std::uint64_t>(
            (static_cast<unsigned>(owner) & ((1U << kOwnerBits) - 1U)) |
            ((static_cast<unsigned>(op) & (kOperationsPerOwner - 1U)) << kOwnerBits));
        return head | (static_cast<std::uint64_t>(arg) << 8U) |
               (static_cast<std::uint64_t>(generation) << 16U) |
               (static_cast<std::uint64_t>(slot) << 32U);
    }
    static Tag decode(std::uint64_t data) {
        const auto head = static_cast<unsigned>(data & 0xffU);
        return Tag{static_cast<Owner>(head & ((1U << kOwnerBits) - 1U)),
                   static_cast<std::uint8_t>(head >> kOwnerBits),
                   static_cast<std::uint8_t>((data >> 8U) & 0xffU),
                   static_cast<std::uint16_t>((data >> 16U) & 0xffffU),
                   static_cast<std::uint32_t>(data >> 32U)};
    }
};

}  // namespace splicer::uring
