#include <sys/socket.h>

#include "plane/data_plane.h"

namespace splicer::plane {

void finish_direction(Flow& connection, std::size_t direction, PlaneContext& context) {
    Direction& flow = connection.plane->directions[direction];
    flow.source_eof = true;
    if (!flow.sink_shut) {
        flow.sink_shut = true;
        // Half-close: the sink learns that no more bytes come, and may still answer.
        ::shutdown(connection.sink_fd(direction), SHUT_WR);
    }
    if (connection.plane->directions[0].sink_shut && connection.plane->directions[1].sink_shut) {
        context.close_connection(connection, "done");
    }
}

}  // namespace splicer::plane
