#pragma once

#include <memory>
#include <string>

#include "bpf/pins.h"
#include "plane/data_plane.h"
#include "splicer/result.h"
#include "splicer/splice_program.h"

namespace splicer::plane {

// The kernel moves the bytes: both sockets go into the BPF sockhash and the stream verdict
// redirects each skb to the peer (bpf/splice.bpf.c). Userspace only watches: it copies the
// bytes flow control passed up, and propagates each EOF once every earlier byte is absorbed.
// Loads the BPF program and pins its maps in `pins`; fails where BPF is unavailable.
// How the plane loads bpf/splice.bpf.c for `max_connections` (flow limit, map sizes). The
// start-up self-test loads its own instance with these settings (test hooks left out).
bpf::LoadOptions sockmap_load_options(std::uint32_t max_connections);

Result<std::unique_ptr<DataPlane>> make_sockmap_plane(bpf::PinDir& pins,
                                                      std::uint32_t max_connections);

}  // namespace splicer::plane
