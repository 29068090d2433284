#pragma once

#include <memory>

#include "plane/data_plane.h"

namespace splicer::plane {

// io_uring recv into a 64 KiB buffer per direction, then send until all of it is taken.
std::unique_ptr<DataPlane> make_copy_plane();

}  // namespace splicer::plane
