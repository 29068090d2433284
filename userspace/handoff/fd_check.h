#pragma once
// The fds that came with handoff records (SCM_RIGHTS), checked against what the records say
// they are before any of them is used: a client or backend index must name a connected TCP
// stream socket (or one that was connected and closed since, by a RST or FINs both ways: a
// race of the peers while the pair was between two loops, which the adopting plane ends as
// the old one would have; never a listening socket or one that never was connected), a pipe pair a FIFO read end and write end of one pipe (same inode) whose
// read end holds exactly the bytes the record claims (FIONREAD). A sender that lies, or a
// mix-up of indexes, is refused with an error naming the record and field, never acted on.

#include <vector>

#include "handoff/record.h"
#include "splicer/result.h"
#include "splicer/unique_fd.h"

namespace splicer::handoff {

// `records` as handoff::decode returned them (indexes already below fds.size(), each once).
Result<void> check_fds(const std::vector<ConnectionRecord>& records,
                       const std::vector<UniqueFd>& fds);

}  // namespace splicer::handoff
