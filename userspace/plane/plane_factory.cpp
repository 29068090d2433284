#include "plane/plane_factory.h"

#include "plane/copy_plane.h"
#include "plane/splice_plane.h"
#include "splicer/log.h"

namespace splicer::plane {

Result<PlaneHandle> make_plane(config::SpliceMode mode, const std::string& /*pin_dir*/) {
    switch (mode) {
        case config::SpliceMode::copy: return PlaneHandle{make_copy_plane()};
        case config::SpliceMode::splice: return PlaneHandle{make_splice_plane()};
        case config::SpliceMode::sockmap:
            return Error{"the sockmap plane is not available in this build yet"};
        case config::SpliceMode::automatic:
            log::notice("plane_fallback", {{"plane", "splice"}, {"reason", "sockmap pending"}});
            return PlaneHandle{make_splice_plane()};
    }
    return Error{"unknown splice mode"};
}

}  // namespace splicer::plane
