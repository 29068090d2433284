#pragma once
// Chooses and builds the data plane for `splice_mode`. `auto` takes sockmap where its BPF
// program loads and pins and the sockmap self-test passes on this kernel
// (selftest/sockmap_selftest.h), and splice otherwise, saying which in one log line (after a
// selftest_failed line naming the step, when that was why). `sockmap` asked for by name
// fails the start instead, naming the step: the admin wanted sockmap, not a quiet fallback.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bpf/pins.h"
#include "plane/data_plane.h"
#include "splicer/config.h"
#include "splicer/result.h"
#include "splicer/splice_program.h"

namespace splicer::plane {

// `pins` is where the sockmap plane pins its maps; without it (no bpffs) sockmap is
// unavailable.
// `max_connections`: the most connections the loop may hold (the sockmap plane sizes its
// maps for them).
// `workers`: how many planes to make, one per event loop, of one kind; on sockmap they
// share one program and its sockhash.
// `reuse`: at `splicer upgrade`, the old process's sockmap maps (bpf/reused_maps.h): the
// sockmap plane loads its program onto them (SpliceProgram::load_reusing), sized as they
// are, and the self-test runs on an instance of its own, never on maps that hold pairs.
Result<std::vector<std::unique_ptr<DataPlane>>> make_planes(
    config::SpliceMode mode, bpf::PinDir* pins, std::uint32_t max_connections,
    std::uint32_t workers, std::optional<bpf::ReusedMaps> reuse = std::nullopt);

}  // namespace splicer::plane
