#include "plane/urgent_data.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>

#include "splicer/flow_accounting.h"

namespace splicer::plane {

bool at_urgent_mark(int fd) {
    int at_mark = 0;
    return ::ioctl(fd, SIOCATMARK, &at_mark) == 0 && at_mark == 1;
}

void note_consumed_at_start(Flow& connection) {
    for (std::size_t direction = 0; direction < 2; ++direction) {
        // The daemon counted what it took from the sockets (a pair it only peeked at):
        // nothing to read from the kernel (4 system calls per socket). The baselines are
        // indexed by socket, and socket `direction` is that direction's source.
        if (connection.plane->baselines_known) {
            connection.plane->directions[direction].consumed_at_start =
                connection.plane->baselines[direction].consumed;
            connection.plane->directions[direction].consumed_known = true;
            continue;
        }
        // take_baseline's `consumed`: payload taken from the socket so far (FIN and unread
        // bytes left out), read until the socket's counters stood still.
        auto baseline = take_baseline(connection.source_fd(direction));
        connection.plane->directions[direction].consumed_at_start =
            baseline ? baseline->consumed : 0;
        connection.plane->directions[direction].consumed_known = baseline.has_value();
    }
}

std::uint64_t urgent_bytes_skipped(const Flow& connection, std::size_t direction) {
    const Direction& flow = connection.plane->directions[direction];
    if (!flow.consumed_known) {
        return 0;
    }
    auto consumed = consumed_after_eof(connection.source_fd(direction));
    if (!consumed || *consumed < flow.consumed_at_start + flow.bytes) {
        return 0;
    }
    return *consumed - flow.consumed_at_start - flow.bytes;
}

}  // namespace splicer::plane
