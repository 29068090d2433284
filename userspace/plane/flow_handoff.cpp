#include "plane/flow_handoff.h"

#include <cerrno>
#include <cstring>
#include <memory>

namespace splicer::plane {
namespace {

std::uint32_t push_fd(std::vector<UniqueFd>& fds, UniqueFd fd) {
    fds.push_back(std::move(fd));
    return static_cast<std::uint32_t>(fds.size() - 1);
}

UniqueFd take_fd(std::vector<UniqueFd>& fds, std::uint32_t index) {
    return index < fds.size() ? std::move(fds[index]) : UniqueFd();
}

}  // namespace

void export_flow_common(Flow& connection, handoff::ConnectionRecord& record,
                        std::vector<UniqueFd>& fds) {
    connection.exported = true;
    record.client = push_fd(fds, std::move(connection.client));
    record.backend = push_fd(fds, std::move(connection.backend));
    for (std::size_t d = 0; d < 2; ++d) {
        const Direction& flow = connection.plane->directions[d];
        handoff::DirectionRecord& out = record.directions[d];
        out.bytes = flow.bytes;
        out.source_eof = flow.source_eof;
        out.sink_shut = flow.sink_shut;
        out.source_braked = flow.source_braked;
        out.braked_by_watch = flow.braked_by_watch;
        out.consumed_known = flow.consumed_known;
        out.consumed_at_start = flow.consumed_at_start;
        if (flow.buffer && flow.sent < flow.filled) {
            const std::byte* first = flow.buffer.get() + flow.sent;
            out.buffered.assign(first, first + (flow.filled - flow.sent));
        }
    }
}

void import_flow(const handoff::ConnectionRecord& record, std::vector<UniqueFd>& fds,
                 Flow& connection, std::size_t buffer_bytes) {
    connection.client = take_fd(fds, record.client);
    connection.backend = take_fd(fds, record.backend);
    connection.make_plane_state();
    for (std::size_t d = 0; d < 2; ++d) {
        const handoff::DirectionRecord& in = record.directions[d];
        Direction& flow = connection.plane->directions[d];
        flow.bytes = in.bytes;
        flow.source_eof = in.source_eof;
        flow.sink_shut = in.sink_shut;
        flow.source_braked = in.source_braked;
        flow.braked_by_watch = in.braked_by_watch;
        flow.consumed_known = in.consumed_known;
        flow.consumed_at_start = in.consumed_at_start;
        // sockmap plane (socket d is the source of direction d)
        connection.plane->baselines[d].consumed = in.baseline_consumed;
        connection.plane->baselines[d].written = in.baseline_written;
        flow.copied = in.copied;
        flow.urgent_removed = in.urgent_removed;
        if (!in.buffered.empty() && in.buffered.size() <= buffer_bytes) {
            flow.buffer = std::make_unique_for_overwrite<std::byte[]>(buffer_bytes);
            std::memcpy(flow.buffer.get(), in.buffered.data(), in.buffered.size());
            flow.filled = in.buffered.size();
            flow.sent = 0;
        }
        if (in.pipe_read != handoff::kNoFd) {
            flow.pipe_read = take_fd(fds, in.pipe_read);
            flow.pipe_write = take_fd(fds, in.pipe_write);
            flow.in_pipe = in.in_pipe;
        }
    }
}

std::uint64_t settle_copy_round(Flow& connection, const PlaneTag& tag, int result,
                                bool keep_buffer) {
    Direction& flow = connection.plane->directions[tag.arg & 1U];
    const bool cancelled = result == -ECANCELED || result == -EINTR;
    if (tag.op == PlaneOp::plane_recv) {
        if (result > 0) {
            flow.filled = static_cast<std::size_t>(result);
            flow.sent = 0;
            return 0;
        }
        if (result == 0) {
            // The FIN: the adopting loop reads it again (a socket that saw its FIN keeps
            // returning 0) and finishes the direction there.
            flow.source_eof = true;
        } else if (!cancelled && result != -EAGAIN) {
            connection.export_failed = true;
        }
        if (!keep_buffer) {
            flow.buffer.reset();
        }
        return 0;
    }
    // plane_send
    if (result > 0) {
        flow.sent += static_cast<std::size_t>(result);
        flow.bytes += static_cast<std::uint64_t>(result);
        if (!keep_buffer && flow.sent >= flow.filled) {
            flow.buffer.reset();
        }
        return static_cast<std::uint64_t>(result);
    }
    if (!cancelled) {
        connection.export_failed = true;
    }
    return 0;
}

void settle_flags(Flow& connection, const PlaneTag& tag) {
    switch (tag.op) {
        case PlaneOp::plane_watch: connection.plane->watch_armed = false; break;
        case PlaneOp::plane_timer: connection.plane->plane_timer_armed = false; break;
        case PlaneOp::plane_hangup:
            connection.plane->directions[tag.arg & 1U].source_error_armed = false;
            break;
        default: break;
    }
}

}  // namespace splicer::plane
