#pragma once
// The byte layout of a list of handoff records (handoff/record.h), and its defensive
// reader. The receiver treats the bytes as hostile: every length is checked against the
// bounds in record.h and against what is left, every fd index against the number of fds
// that came with the bytes, each fd may be named once, and anything else is refused with an
// error that names the record and field. Pure: no I/O, fuzzed (tests/fuzz/fuzz_handoff.cpp).
//
// Layout, all integers little-endian:
//   header:  "SPLHANDO" (8 bytes), u32 version, u32 record count, u32 fd count
//   record:  u8 plane, u8 reserved (0), u16 protocol length, u64 id, u32 client fd index,
//            u32 backend fd index, u32 listener, u64 age_ms, protocol bytes,
//            then per direction: u64 bytes, u8 flags, u64 consumed_at_start,
//            u32 pipe_read index, u32 pipe_write index, u32 in_pipe,
//            u64 baseline_consumed, u64 baseline_written, u64 copied, u64 urgent_removed,
//            u32 buffered length, buffered bytes,
//            then u8 client family (0, 4, 6), u16 client port, 16 bytes client address
//            (record.h ClientAddress: all zero for family 0, bytes 4-15 zero for 4),
//            then the client socket's peer, laid out the same way (version 3)
//   nothing after the last record.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "handoff/record.h"
#include "splicer/result.h"

namespace splicer::handoff {

// The bytes for `records`, which name fds 0 .. fd_count-1 (the SCM_RIGHTS array sent with
// them, in that order).
std::vector<std::byte> encode(const std::vector<ConnectionRecord>& records,
                              std::uint32_t fd_count);

// The records in `bytes`, which arrived with `fd_count` fds; an Error names what is wrong.
Result<std::vector<ConnectionRecord>> decode(std::span<const std::byte> bytes,
                                             std::uint32_t fd_count);

}  // namespace splicer::handoff
