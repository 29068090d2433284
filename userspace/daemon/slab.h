#pragma once
// Fixed-capacity storage for connection records with a generation per slot: io_uring
// completions carry (slot, generation), so one that arrives for a reused slot is recognised.
//
// Records are made as the first connections need them, up to the capacity, in a deque (a
// record never moves once made: connections hold references to theirs). Made all at start,
// the default 16,384 records were 12 MB of every idle daemon's RSS, and with `workers` each
// worker's slab has the whole max_connections as capacity (the kernel may send every
// connection to one worker), which multiplied that by the number of workers.

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "daemon/connection.h"

namespace splicer::daemon {

class Slab {
public:
    explicit Slab(std::uint32_t capacity) : capacity_(capacity) {}

    // A fresh record, or nullopt when all slots are taken.
    std::optional<std::uint32_t> acquire() {
        std::uint32_t slot = 0;
        if (!free_.empty()) {
            slot = free_.back();  // the most recently released: its memory is warm
            free_.pop_back();
        } else if (slots_.size() < capacity_) {
            slot = static_cast<std::uint32_t>(slots_.size());
            slots_.emplace_back();
        } else {
            return std::nullopt;
        }
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

    [[nodiscard]] std::uint32_t capacity() const { return capacity_; }
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
    std::uint32_t capacity_;
    std::deque<Connection> slots_;     // records made so far; never shrinks
    std::vector<std::uint32_t> free_;  // released slots, reused before a new one is made
    std::uint32_t in_use_ = 0;
};

}  // namespace splicer::daemon
