#pragma once
// Established connections' batches over the handover socket, after the new process said
// ready (`splicer upgrade`, README "Upgrading"): each old worker's export (handoff/batch.h:
// the records' bytes, handoff/wire.h, and the fds they name by index) crosses as one batch.
// A batch can be larger than one SOCK_SEQPACKET record may be (the socket's send buffer, and
// SCM_MAX_FD fds), so it goes in pieces:
//   "SPLB" version, byte count (u32), fd count (u32)      one header record, no fds
//   "SPLP" version, up to kPieceBytes of the bytes        with up to kListenersPerRecord fds
// the pieces in order until both counts are reached exactly; the receiver answers each batch
//   "SPLA" version, 1 (taken) or 0 (refused)              new -> old
// and the sender keeps its own copies of the fds until that answer: a batch refused, or one
// whose answer never comes, goes back to the loop that exported it (nothing is lost when the
// new process fails). After the last batch
//   "SPLE" version                                         the end: nothing more comes.
// Blocking, bounded by the socket's timeouts. The receiver (the new process) trusts nothing:
// the counts are bounded (kMaxBatchBytes, kMaxBatchFds), memory grows only with what
// arrived, a piece past either count or a record of another kind is an error, and every fd
// that arrived is owned (closed on any error). The bytes are handoff::decode's to check.

#include <cstddef>
#include <optional>
#include <span>
#include <vector>

#include "splicer/result.h"
#include "splicer/unique_fd.h"

namespace splicer::upgrade {

// A copy round holds at most 2 x 64 KiB per connection; most hold nothing when exported.
inline constexpr std::size_t kMaxBatchBytes = 256U * 1024 * 1024;
// Two sockets and two pipes' ends per connection, for 2^16 connections per worker.
inline constexpr std::size_t kMaxBatchFds = 4U * 65536;
// Well under the socket's default send buffer (net.core.wmem_default, 208 KiB).
inline constexpr std::size_t kPieceBytes = 32 * 1024;

struct ReceivedBatch {
    std::vector<std::byte> bytes;
    std::vector<UniqueFd> fds;
};

// Sends one batch; `fds` are not given away (the receiver gets its own references).
Result<void> send_batch(int socket, std::span<const std::byte> bytes, std::span<const int> fds);
// The receiver's answer to a batch: it holds the fds now (taken), or it dropped them.
Result<void> send_batch_answer(int socket, bool taken);
// true: taken. An error when the answer is missing (closed, timeout) or malformed; the
// sender must then treat the batch as not taken.
Result<bool> receive_batch_answer(int socket);
// Says no batch follows.
Result<void> send_batches_end(int socket);
// The next batch, or nullopt after the end record; an error for anything else (the peer
// closed before the end, a timeout, a malformed record).
Result<std::optional<ReceivedBatch>> receive_batch(int socket);

}  // namespace splicer::upgrade
