#pragma once
// Chooses and builds the data plane for `splice_mode`. `auto` takes sockmap where its BPF
// program loads and pins, and splice otherwise, saying which in one log line.

#include <memory>
#include <string>

#include "bpf/pins.h"
#include "plane/data_plane.h"
#include "splicer/config.h"
#include "splicer/result.h"

namespace splicer::plane {

// `pins` is where the sockmap plane pins its maps; without it (no bpffs) sockmap is
// unavailable.
Result<std::unique_ptr<DataPlane>> make_plane(config::SpliceMode mode, bpf::PinDir* pins);

}  // namespace splicer::plane
