#pragma once
// One message over a SOCK_SEQPACKET unix socket, of any size up to a bound: a unix socket
// refuses a record above its send buffer (net.core.wmem_default, about 208 KiB), so a
// message goes as records of at most kRecordBytes, the first led by the total length.
// Blocking, with the socket's SO_SNDTIMEO / SO_RCVTIMEO as the only wait.

#include <cstddef>
#include <string>
#include <string_view>

#include "splicer/result.h"

namespace splicer::privsep {

inline constexpr std::size_t kRecordBytes = 64 * 1024;

Result<void> send_message(int fd, std::string_view message);
// An error for EOF, a timeout, a record cut by MSG_TRUNC or a length above `max_bytes`.
Result<std::string> receive_message(int fd, std::size_t max_bytes);

// A send gives up after `send_seconds` (SO_SNDTIMEO), a receive after `receive_seconds`
// (SO_RCVTIMEO); 0 waits for ever.
Result<void> set_timeouts(int fd, long send_seconds, long receive_seconds);

}  // namespace splicer::privsep
