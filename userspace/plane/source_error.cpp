#include "plane/source_error.h"

#include <poll.h>
#include <sys/socket.h>

#include "plane/end_reason.h"

namespace splicer::plane {

void watch_source_error(Flow& connection, std::uint8_t direction, PlaneContext& context) {
    Direction& flow = connection.plane->directions[direction];
    if (flow.source_error_armed || flow.source_error_ended || flow.source_eof) {
        return;
    }
    flow.source_error_armed = true;
    io_uring_sqe* sqe = context.sqe_for(connection, PlaneOp::plane_hangup, direction);
    io_uring_prep_poll_add(sqe, connection.source_fd(direction), POLLERR);
}

void watch_held_sources(Flow& connection, const std::array<bool, 2>& held, PlaneContext& context) {
    for (std::uint8_t direction = 0; direction < 2; ++direction) {
        if (held[direction]) {
            watch_source_error(connection, direction, context);
        }
    }
}

void on_source_error(Flow& connection, std::uint8_t direction, int result, PlaneContext& context) {
    Direction& flow = connection.plane->directions[direction];
    flow.source_error_armed = false;
    if (result < 0 || (result & POLLERR) == 0) {
        flow.source_error_ended = true;  // the FIN (POLLRDHUP): the round will read it
        return;
    }
    // SO_ERROR takes the error off the socket; 0 when a call of the plane took it first
    // (that call then reports it).
    int error = 0;
    socklen_t length = sizeof(error);
    if (::getsockopt(connection.source_fd(direction), SOL_SOCKET, SO_ERROR, &error, &length) != 0 ||
        error == 0) {
        flow.source_error_ended = true;
        return;
    }
    context.abort_connection(connection, failed_call("poll", error, direction));
}

}  // namespace splicer::plane
