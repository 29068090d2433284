#pragma once

#include <memory>

#include "plane/data_plane.h"

namespace splicer::plane {

// recv() into a 64 KiB buffer per direction once the source is readable, then an io_uring
// send until all of it is taken; the buffer is held only while bytes are in it.
std::unique_ptr<DataPlane> make_copy_plane();

}  // namespace splicer::plane
