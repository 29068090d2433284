#pragma once
// The bytes of `splicer upgrade`'s handover (README "Upgrading without dropping connections").
// Two messages over a SOCK_SEQPACKET unix socketpair, each one record:
//   offer  old -> new: "SPLU", version, listener count, then one flags byte per listener; the
//          listening sockets themselves ride along as SCM_RIGHTS, in the same order.
//   ready  new -> old: "SPLR", version, the new process's pid. Sent once it listens on them.
// The new process, root at its start, reads bytes written by the old one, which parsed
// network input for hours: they are untrusted. Every field is bounds-checked, sizes are fixed
// or capped, and nothing here names a path or an address: a listener's address is asked of
// the kernel (getsockname) on the fd itself, never taken from the message.
// Pure: no I/O (upgrade/fd_passing.h moves the records and the fds).

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "splicer/result.h"

namespace splicer::upgrade {

// Bumped on any change of these layouts; a new binary refuses an offer of another version,
// and the old process then keeps serving (upgrade_failed).
inline constexpr std::uint16_t kProtocolVersion = 1;
// SCM_RIGHTS carries at most 253 fds per message (SCM_MAX_FD); listeners are few.
inline constexpr std::size_t kMaxListeners = 64;
// The largest record either side accepts: an offer with kMaxListeners flags, with room.
inline constexpr std::size_t kMaxRecordBytes = 256;

// A listener as handed over: what the new process cannot learn from the socket itself.
struct OfferedListener {
    bool http = false;          // served as port 80 (HTTP proxy), not probed
    bool from_systemd = false;  // systemd's socket: never shut down at a stop
    bool metrics = false;       // the metrics endpoint's (`metrics:`), not a data listener
};

std::string encode_offer(std::span<const OfferedListener> listeners);
// The listeners of a well-formed offer of this version; an error naming what is wrong
// (magic, version, count above kMaxListeners, length, unknown flag bits) otherwise.
Result<std::vector<OfferedListener>> decode_offer(std::span<const std::byte> bytes);

std::string encode_ready(pid_t pid);
// The new process's pid (> 1) from a well-formed ready message.
Result<pid_t> decode_ready(std::span<const std::byte> bytes);

}  // namespace splicer::upgrade
