#include <sys/socket.h>

#include "plane/data_plane.h"
#include "plane/end_reason.h"

namespace splicer::plane {

void finish_direction(Flow& connection, std::size_t direction, PlaneContext& context) {
    Direction& flow = connection.plane->directions[direction];
    flow.source_eof = true;
    if (!flow.sink_shut) {
        flow.sink_shut = true;
        // Half-close: the sink learns that no more bytes come, and may still answer.
        ::shutdown(connection.sink_fd(direction), SHUT_WR);
    }
    // Both sources' FINs read and both sinks shut after their last byte: no operation of the
    // plane waits on either socket, so the pair ends without the loop's shutdowns, which on
    // sockets whose FINs both went by only answer ENOTCONN (close_finished).
    if (connection.plane->directions[0].sink_shut && connection.plane->directions[1].sink_shut) {
        context.close_finished(connection);
    }
}

void source_read_zero(Flow& connection, std::size_t direction, PlaneContext& context) {
    // The source's socket is the other direction's sink: its write side is ours to shut.
    const bool write_shut = connection.plane->directions[1 - direction].sink_shut;
    if (ended_by_reset(connection.source_fd(direction), write_shut)) {
        context.abort_connection(connection, peer_reset(direction));
        return;
    }
    finish_direction(connection, direction, context);
}

}  // namespace splicer::plane
