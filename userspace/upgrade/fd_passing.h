#pragma once
// One SOCK_SEQPACKET record with file descriptors attached (SCM_RIGHTS), both ways, for the
// upgrade handover (upgrade/handover_protocol.h). Received fds are owned (UniqueFd) from the
// moment recvmsg returns, close-on-exec (MSG_CMSG_CLOEXEC); a record or its fds cut short
// (MSG_TRUNC, MSG_CTRUNC) is an error and every fd that did arrive is closed.
// Blocking, bounded by the socket's SO_SNDTIMEO / SO_RCVTIMEO.

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "splicer/result.h"
#include "splicer/unique_fd.h"

namespace splicer::upgrade {

// SCM_MAX_FD in the kernel: more in one message is refused.
inline constexpr std::size_t kMaxFdsPerRecord = 253;

struct Record {
    std::string bytes;
    std::vector<UniqueFd> fds;
};

// `fds` are not given away: the receiver gets its own references to the same open files.
Result<void> send_record(int socket, std::string_view bytes, std::span<const int> fds);
// EOF or ECONNRESET (the peer closed or exited) is an error "closed"; so is a record above
// `max_bytes` or with more than `max_fds` fds.
Result<Record> receive_record(int socket, std::size_t max_bytes, std::size_t max_fds);

}  // namespace splicer::upgrade
