#pragma once
// The bytes of `splicer upgrade`'s handover (README "Upgrading without dropping connections").
// Over a SOCK_SEQPACKET unix socketpair, each message one record:
//   offer  old -> new: one or more records "SPLU", version, total listener count, index of
//          the record's first listener, its listener count, then one flags byte per
//          listener; the listening sockets themselves ride along as SCM_RIGHTS, in the same
//          order. With `workers` an address has one socket per worker, so an offer may hold
//          more sockets than one record can carry (SCM_MAX_FD, 253): at most
//          kListenersPerRecord go in each record, in order, kMaxListeners in all.
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
// Version 2: offers in records of at most kListenersPerRecord (`workers`).
inline constexpr std::uint16_t kProtocolVersion = 2;
// Every listening socket of the old process: addresses x workers (each address has one
// socket per worker, systemd's one socket counted once), plus the metrics endpoint's. 4096
// covers 64 addresses on 64 workers; an old process with more fails its upgrade and serves on.
inline constexpr std::size_t kMaxListeners = 4096;
// SCM_RIGHTS carries at most 253 fds per message (SCM_MAX_FD).
inline constexpr std::size_t kListenersPerRecord = 250;
// The largest record either side accepts: an offer record with kListenersPerRecord flags,
// with room.
inline constexpr std::size_t kMaxRecordBytes = 512;

// A listener as handed over: what the new process cannot learn from the socket itself.
struct OfferedListener {
    bool http = false;          // served as port 80 (HTTP proxy), not probed
    bool from_systemd = false;  // systemd's socket: never shut down at a stop
    bool metrics = false;       // the metrics endpoint's (`metrics:`), not a data listener
};

// One record of an offer: listeners [first, first + size) of `total`.
struct OfferRecord {
    std::size_t total = 0;
    std::size_t first = 0;
    std::vector<OfferedListener> listeners;
};

// The records an offer of `listeners` (1 to kMaxListeners) is sent as, in order.
std::vector<std::string> encode_offer(std::span<const OfferedListener> listeners);
// One well-formed offer record of this version; an error naming what is wrong (magic,
// version, a total above kMaxListeners, more than kListenersPerRecord in one record, a
// record reaching past the total, length, unknown flag bits) otherwise. Whether the records
// come in order is the receiver's to check (upgrade/adoption.h).
Result<OfferRecord> decode_offer(std::span<const std::byte> bytes);

std::string encode_ready(pid_t pid);
// The new process's pid (> 1) from a well-formed ready message.
Result<pid_t> decode_ready(std::span<const std::byte> bytes);

}  // namespace splicer::upgrade
