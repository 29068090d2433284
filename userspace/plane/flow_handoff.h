#pragma once
// What every plane's export and adopt share (handoff, userspace/handoff/README.md): the
// flow's sockets and per-direction state to a handoff record and back, and how a completion
// that arrives while the connection is being quiesced is recorded. A plane adds its own
// part (the splice plane's pipes) in its export_flow and adopt.

#include <cstdint>
#include <vector>

#include "handoff/record.h"
#include "plane/data_plane.h"
#include "plane/flow.h"
#include "splicer/unique_fd.h"

namespace splicer::plane {

// Moves the client and backend sockets to the end of `fds` (their indexes into the record)
// and copies each direction's counts, flags and the bytes its buffer holds unsent.
void export_flow_common(Flow& connection, handoff::ConnectionRecord& record,
                        std::vector<UniqueFd>& fds);

// The reverse, into a fresh flow: sockets and pipes taken out of `fds` (the indexes were
// checked by handoff::decode and handoff::check_fds), buffered bytes into a buffer of
// `buffer_bytes` (at least handoff::kMaxBufferedBytes) as filled and not yet sent.
void import_flow(const handoff::ConnectionRecord& record, std::vector<UniqueFd>& fds,
                 Flow& connection, std::size_t buffer_bytes);

// A completion's result while quiescing: a copy round's recv or send (copy plane, and the
// splice plane's copy rounds). Returns the bytes delivered to the sink (a send), for the
// plane's counters. An error other than the cancel marks the flow export_failed.
// `keep_buffer`: the copy plane keeps its buffer between rounds, the splice plane frees it.
std::uint64_t settle_copy_round(Flow& connection, const PlaneTag& tag, int result,
                                bool keep_buffer);

// Marks the timers and polls a plane keeps flags for as no longer armed (their completions,
// cancelled or not, arrive while quiescing).
void settle_flags(Flow& connection, const PlaneTag& tag);

}  // namespace splicer::plane
