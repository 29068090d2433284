#pragma once
// What a connection needs only from its accept until it is routed: the bytes the probe
// peeked, the probe deadline and the connect's, the wake-up threshold, what probing cost and
// what the ClientHello said (SNI, ALPN) for the routed line and a PROXY header's TLVs. Made
// when probing starts (EventLoop::start_probing), freed once it has served: after a
// terminating rule's routed line, after the backend's connect and its PROXY header
// (connecting.cpp), when a PROXY header read on port 80 hands over to the HTTP exchange.
// Every connection pays for its record while it lives, idle ones too (daemon/connection.h):
// these 112 bytes (and the SNI's heap copy, past 15 bytes) are not in it.

#include <linux/time_types.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "memory/compact_string.h"
#include "memory/rare_string.h"

namespace splicer::daemon {

struct RoutingState {
    // probing: bytes peeked so far (still queued on the client socket)
    std::vector<std::byte> peeked;
    // The probe deadline while probing, then the connect's linked timeout; the kernel copies
    // each when it is submitted. Both outlive their submission: the connect's is written only
    // on a decision, and the state freed only after a completion of this connection (the
    // probe's poll or timeout, the connect), or with the record; each timeout is submitted
    // with the operation that brings such a completion.
    __kernel_timespec timeout{};
    std::size_t needed = 0;        // the router's Decision::needed: wake once this many are queued
    std::uint64_t peek_bytes = 0;  // bytes the probe's peeks copied (on the routed line)
    std::uint32_t peeks = 0;       // peeks made (on the routed line)
    // polls armed for more bytes; the first also armed the probe timeout (a decision on the
    // bytes queued at the accept needs neither: EventLoop::start_probing)
    std::uint32_t waits = 0;
    int receive_low_water = 1;  // SO_RCVLOWAT set on the client socket (1: the default)
    bool peek_offset = false;   // SO_PEEK_OFF is set: a peek returns only new bytes
    // What the ClientHello said, taken when routed, for the routed line: SNI, ALPN (16 bytes
    // each, memory/compact_string.h); and the ALPN a v2 PROXY header carries (a reload while
    // connecting must not change what this connection sends; empty on nearly every one).
    memory::CompactString sni;
    memory::CompactString alpn;
    memory::RareString proxy_alpn;
};

}  // namespace splicer::daemon
