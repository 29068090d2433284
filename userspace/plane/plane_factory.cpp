#include "plane/plane_factory.h"

#include "plane/copy_plane.h"
#include "plane/sockmap_plane.h"
#include "plane/splice_plane.h"
#include "splicer/log.h"

namespace splicer::plane {
namespace {

Result<std::unique_ptr<DataPlane>> try_sockmap(bpf::PinDir* pins, std::uint32_t max_connections) {
    if (pins == nullptr) {
        return Error{"no usable pin dir (the no_pins line says why)"};
    }
    return make_sockmap_plane(*pins, max_connections);
}

}  // namespace

Result<std::unique_ptr<DataPlane>> make_plane(config::SpliceMode mode, bpf::PinDir* pins,
                                              std::uint32_t max_connections) {
    switch (mode) {
        case config::SpliceMode::copy: return make_copy_plane();
        case config::SpliceMode::splice: return make_splice_plane();
        case config::SpliceMode::sockmap: {
            auto sockmap = try_sockmap(pins, max_connections);
            if (!sockmap) {
                return sockmap.error().with_context("sockmap");
            }
            return sockmap;
        }
        case config::SpliceMode::automatic: {
            // scripts/bench on Linux 6.18 (README, Performance): sockmap matches or beats
            // splice on one bulk stream at half the daemon CPU per GB, and wins new TLS
            // connections, keep-alive and ping-pong; splice stays the plane where BPF is not
            // available (no root, no bpffs, an older kernel).
            auto sockmap = try_sockmap(pins, max_connections);
            if (sockmap) {
                log::notice("plane_choice", {{"plane", "sockmap"}, {"reason", "auto: BPF loaded"}});
                return sockmap;
            }
            log::notice("plane_choice", {{"plane", "splice"},
                                         {"reason", "auto: sockmap unavailable"},
                                         {"error", sockmap.error().message}});
            return make_splice_plane();
        }
    }
    return Error{"unknown splice mode"};
}

}  // namespace splicer::plane
