#pragma once

#include <memory>
#include <string>
#include <vector>

#include "bpf/pins.h"
#include "plane/data_plane.h"
#include "splicer/result.h"
#include "splicer/splice_program.h"

namespace splicer::plane {

// The kernel moves the bytes: both sockets go into the BPF sockhash and the stream verdict
// redirects each skb to the peer (bpf/splice.bpf.c). Userspace only watches: it copies the
// bytes flow control passed up, and propagates each EOF once every earlier byte is absorbed.

// How the plane loads bpf/splice.bpf.c for `max_connections` (flow limit, map sizes).
// `splicer selftest` loads its own instance with these settings.
bpf::LoadOptions sockmap_load_options(std::uint32_t max_connections);

// Pins `program`'s maps in `pins` and makes `count` planes around it, one per worker, all
// sharing its one sockhash (the first reports its kernel counters). `program` is loaded with
// sockmap_load_options() and proven by the start-up self-test (plane/plane_factory.cpp); it
// must hold no socket yet, unless it was loaded onto the maps of the process `splicer
// upgrade` replaces (SpliceProgram::load_reusing), whose pairs it then adopts.
Result<std::vector<std::unique_ptr<DataPlane>>> make_sockmap_planes(bpf::SpliceProgram program,
                                                                   bpf::PinDir& pins,
                                                                   std::uint32_t count);

}  // namespace splicer::plane
