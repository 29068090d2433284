#pragma once
// What the sink watch (plane/sink_watch.h) tells the operator about readers that stop: a
// `reader_stopped` line when it brakes a sink whose reader took nothing for kLowerAfter, a
// `reader_resumed` line when that reader takes kResumeAfterBytes again, and a count of each
// (DaemonCounters::readers_stopped, readers_resumed). Lines go out at most once a second per
// kind, with the events folded into them (`stops`, `resumes`): every client of a flood that
// never reads must not become a line, as for the refusal and fallback lines. The counters
// count every event.

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "log/interval_gate.h"

namespace splicer::plane {

class ReaderStops {
public:
    // The reader of connection `conn`'s `direction` sink stopped: `queued` bytes wait in the
    // sink's send queue (SIOCOUTQ), `held`: the plane holds more for it.
    void stopped(std::uint64_t conn, std::size_t direction, std::uint64_t queued, bool held);
    // It reads again, after taking nothing for `stopped_for`.
    void resumed(std::uint64_t conn, std::size_t direction, std::chrono::milliseconds stopped_for);

    [[nodiscard]] std::uint64_t stopped_count() const { return stopped_count_; }
    [[nodiscard]] std::uint64_t resumed_count() const { return resumed_count_; }

private:
    std::uint64_t stopped_count_ = 0;
    std::uint64_t resumed_count_ = 0;
    log::IntervalGate stopped_log_{std::chrono::seconds(1)};
    log::IntervalGate resumed_log_{std::chrono::seconds(1)};
};

}  // namespace splicer::plane
