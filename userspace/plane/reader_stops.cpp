#include "plane/reader_stops.h"

#include <string>
#include <string_view>

#include "splicer/log.h"

namespace splicer::plane {

namespace {

std::string direction_name(std::size_t direction) {
    return direction == 0 ? "client_to_backend" : "backend_to_client";
}

}  // namespace

void ReaderStops::stopped(std::uint64_t conn, std::size_t direction, std::uint64_t queued,
                          bool held) {
    ++stopped_count_;
    if (auto folded = stopped_log_.pass()) {
        log::warning("reader_stopped", {{"conn", std::to_string(conn)},
                                        {"dir", direction_name(direction)},
                                        {"queued", std::to_string(queued)},
                                        {"held", held ? "yes" : "no"},
                                        {"stops", std::to_string(*folded)}});
    }
}

void ReaderStops::resumed(std::uint64_t conn, std::size_t direction,
                          std::chrono::milliseconds stopped_for) {
    ++resumed_count_;
    if (auto folded = resumed_log_.pass()) {
        log::notice("reader_resumed", {{"conn", std::to_string(conn)},
                                       {"dir", direction_name(direction)},
                                       {"stopped_ms", std::to_string(stopped_for.count())},
                                       {"resumes", std::to_string(*folded)}});
    }
}

}  // namespace splicer::plane
