#include "plane/plane_factory.h"

#include "plane/copy_plane.h"
#include "plane/sockmap_plane.h"
#include "plane/splice_plane.h"
#include "splicer/log.h"

namespace splicer::plane {
namespace {

Result<std::unique_ptr<DataPlane>> try_sockmap(bpf::PinDir* pins) {
    if (pins == nullptr) {
        return Error{"no bpffs pin dir"};
    }
    return make_sockmap_plane(*pins);
}

}  // namespace

Result<std::unique_ptr<DataPlane>> make_plane(config::SpliceMode mode, bpf::PinDir* pins) {
    switch (mode) {
        case config::SpliceMode::copy: return make_copy_plane();
        case config::SpliceMode::splice: return make_splice_plane();
        case config::SpliceMode::sockmap: {
            auto sockmap = try_sockmap(pins);
            if (!sockmap) {
                return sockmap.error().with_context("sockmap");
            }
            return sockmap;
        }
        case config::SpliceMode::automatic:
            // scripts/bench on Linux 6.18 (README, Performance): splice beats sockmap on bulk
            // throughput (sockmap falls back to copying after flow-control trips) and on new
            // connections per second, and matches its CPU per GB. So auto picks splice until
            // the benchmark shows sockmap winning; `--splice-mode sockmap` still selects it.
            log::notice("plane_choice",
                        {{"plane", "splice"},
                         {"reason", "auto: splice wins bulk and new connections in scripts/bench"}});
            return make_splice_plane();
    }
    return Error{"unknown splice mode"};
}

}  // namespace splicer::plane
