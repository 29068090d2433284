#pragma once
// "Log once per interval": a limit that is hit by every connection of a flood must not log a
// line per connection. An IntervalGate says when the next line may go out and how many
// events were folded into it since the last one.

#include <chrono>
#include <cstdint>
#include <optional>

namespace splicer::log {

class IntervalGate {
public:
    using Clock = std::chrono::steady_clock;

    explicit IntervalGate(Clock::duration interval) : interval_(interval) {}

    // Counts one event. Returns the events since the last line (this one included) when a
    // line should be logged now, nullopt when it is folded into a later one.
    std::optional<std::uint64_t> pass(Clock::time_point now = Clock::now()) {
        ++pending_;
        if (logged_once_ && now - last_ < interval_) {
            return std::nullopt;
        }
        logged_once_ = true;
        last_ = now;
        const std::uint64_t events = pending_;
        pending_ = 0;
        return events;
    }

private:
    Clock::duration interval_;
    Clock::time_point last_{};
    bool logged_once_ = false;
    std::uint64_t pending_ = 0;
};

}  // namespace splicer::log
