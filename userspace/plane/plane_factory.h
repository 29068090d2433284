#pragma once
// Chooses and builds the data plane for `splice_mode`. `auto` takes sockmap where its BPF
// program loads and pins, and splice otherwise, saying which in one log line.

#include <memory>
#include <string>

#include "plane/data_plane.h"
#include "splicer/config.h"
#include "splicer/result.h"

namespace splicer::plane {

struct PlaneHandle {
    std::unique_ptr<DataPlane> plane;
};

Result<PlaneHandle> make_plane(config::SpliceMode mode, const std::string& pin_dir);

}  // namespace splicer::plane
