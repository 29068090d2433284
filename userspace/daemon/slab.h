#pragma once
// Fixed-capacity storage for connection records with a generation per slot: io_uring
// completions carry (slot, generation), so one that arrives for a reused slot is recognised.

#include <cstdint>
#include <optional>
#include <vector>

#include "daemon/connection.h"

namespace splicer::daemon {

class Slab {
public:
    explicit Slab(std::uint32_t capacity) : slots_(capacity) {
        free_.reserve(capacity);
        for (std::uint32_t i = capacity; i > 0; --i) {
            free_.push_back(i - 1);
        }
    }

    // A fresh record, or nullopt when all slots are taken.
    std::optional<std::uint32_t> acquire() {
        if (free_.empty()) {
            return std::nullopt;
        }
        const std::uint32_t slot = free_.back();
        free_.pop_back();
        Connection& connection = slots_[slot];
        const auto generation = static_cast<std::uint16_t>(connection.generation + 1);
        connection = Connection{};
        connection.slot = slot;
        connection.generation = generation;
        connection.in_use = true;
        ++in_use_;
        return slot;
    }

    void release(std::uint32_t slot) {
        Connection& connection = slots_[slot];
        const std::uint16_t generation = connection.generation;
        connection = Connection{};  // closes whatever fds are left
        connection.generation = generation;
        free_.push_back(slot);
        --in_use_;
    }

    // The record if `generation` is still current, else nullptr.
    Connection* find(std::uint32_t slot, std::uint16_t generation) {
        if (slot >= slots_.size() || !slots_[slot].in_use ||
            slots_[slot].generation != generation) {
            return nullptr;
        }
        return &slots_[slot];
    }
    Connection& at(std::uint32_t slot) { return slots_[slot]; }
    [[nodiscard]] const Connection& at(std::uint32_t slot) const { return slots_[slot]; }

    [[nodiscard]] std::uint32_t capacity() const {
        return static_cast<std::uint32_t>(slots_.size());
    }
    [[nodiscard]] std::uint32_t in_use() const { return in_use_; }

    template <typename Visit>
    void for_each_in_use(Visit&& visit) {
        for (std::uint32_t slot = 0; slot < slots_.size(); ++slot) {
            if (slots_[slot].in_use) {
                visit(slot, slots_[slot]);
            }
        }
    }

private:
    std::vector<Connection> slots_;
    std::vector<std::uint32_t> free_;
    std::uint32_t in_use_ = 0;
};

}  // namespace splicer::daemon
