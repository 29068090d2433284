#pragma once
// The sockmap plane's maps that a running splicer pinned, as the new process of `splicer
// upgrade` takes them to load its program onto (SpliceProgram::load_reusing), so the old
// process's pairs, already in that sockhash, can be handed over without leaving it.
//
// Every pin is hostile until checked (bpf/pinned_map.h): the pin dir belongs to the run user,
// who can rename, unlink and pin there. Each of the four maps is opened by fd through the
// checked pin dir (no link followed) and refused unless it is a map of exactly the type, key
// and value size, flags and name this build's program declares, pinned by the starting user
// (root: the old process pinned them before its privilege drop), with the three hash maps
// of one max_entries within the sockhash's bounds. Reusing a map of another layout would let
// the verifier accept a program that reads past its values, or pair sockets in a map no
// verdict serves: the start is refused instead, naming the pin and what it is.

#include <sys/types.h>

#include <optional>
#include <string>

#include "splicer/result.h"
#include "splicer/splice_program.h"

namespace splicer::bpf {

// The four maps pinned in the checked pin dir `dir_fd` (shown as `dir_path`), each checked
// as above, pinned by `owner`. nullopt when no `sockets` pin is there (the old process ran
// another plane, or none pinned): the new program then makes maps of its own. An error when
// `sockets` is there and any of the four is missing or not what it must be.
Result<std::optional<ReusedMaps>> open_maps_to_reuse(int dir_fd, const std::string& dir_path,
                                                     uid_t owner);

}  // namespace splicer::bpf
