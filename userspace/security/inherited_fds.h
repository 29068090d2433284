#pragma once
// A forked helper process (the privileged parent's helper, the upgrade launcher) starts with
// every fd the daemon had open: listeners, sockets of clients, pinned-map fds. It must hold
// none of them, or a client's connection would outlive the daemon's close and the helper
// would keep objects it has no business with.

namespace splicer::security {

// Closes every fd but 0, 1, 2 and `keep` (>= 3).
void close_all_fds_but(int keep);

}  // namespace splicer::security
