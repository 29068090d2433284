#pragma once
// The handler of a connection whose bytes a data plane moves (after routing and connecting,
// or on port 80 after a 101): forwards to the daemon's one DataPlane, which keeps its
// per-connection state in the connection's plane::Flow::plane, made here: every connection
// with this handler has it, and only those (plane/flow.h).

#include <array>
#include <optional>

#include "daemon/connection.h"
#include "daemon/connection_handler.h"
#include "plane/data_plane.h"

namespace splicer::daemon {

class PlaneHandler final : public ConnectionHandler {
public:
    // `connection` owns this handler and outlives it; `plane` and `context` outlive both.
    // `known`: the sockets' flow-accounting baselines, where the daemon counted what it read
    // from and wrote into them (plane::untouched_pair_baselines); else the plane reads them.
    PlaneHandler(Connection& connection, plane::DataPlane& plane, plane::PlaneContext& context,
                 const std::optional<std::array<plane::SocketBaseline, 2>>& known = std::nullopt)
        : connection_(connection), plane_(plane), context_(context) {
        plane::PlaneState& state = connection_.make_plane_state();
        if (known) {
            state.baselines = *known;
            state.baselines_known = true;
        }
    }

    void start() override { plane_.start(connection_, context_); }
    void on_completion(std::uint8_t op, std::uint8_t arg, int result,
                       std::uint32_t flags) override {
        plane_.on_completion(connection_, plane::PlaneTag{static_cast<plane::PlaneOp>(op), arg},
                             result, flags, context_);
    }
    void on_closing(HandlerContext& context) override {
        // the sockmap plane's recheck timer and every plane's sink watch (plane/sink_watch.h)
        if (connection_.plane->plane_timer_armed) {
            context.remove_handler_timeout(connection_, code(plane::PlaneOp::plane_timer));
        }
        if (connection_.plane->watch_armed) {
            context.remove_handler_timeout(connection_, code(plane::PlaneOp::plane_watch));
        }
    }
    void teardown() override { plane_.on_teardown(connection_); }
    [[nodiscard]] std::uint64_t bytes(std::size_t direction) const override {
        return connection_.plane->directions.at(direction).bytes;
    }

private:
    static std::uint8_t code(plane::PlaneOp op) { return static_cast<std::uint8_t>(op); }

    Connection& connection_;
    plane::DataPlane& plane_;
    plane::PlaneContext& context_;
};

}  // namespace splicer::daemon
