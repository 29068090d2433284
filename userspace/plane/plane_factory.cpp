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
        case config::SpliceMode::automatic: {
            auto sockmap = try_sockmap(pins);
            if (sockmap) {
                return sockmap;
            }
            log::notice("plane_fallback",
                        {{"plane", "splice"}, {"reason", sockmap.error().message}});
            return make_splice_plane();
        }
    }
    return Error{"unknown splice mode"};
}

}  // namespace splicer::plane
