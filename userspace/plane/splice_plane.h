#pragma once

#include <memory>

#include "plane/data_plane.h"

namespace splicer::plane {

// io_uring IORING_OP_SPLICE through a pipe per direction: source -> pipe -> sink, so bytes
// stay in the kernel (page references move, nothing is copied to userspace).
std::unique_ptr<DataPlane> make_splice_plane();

}  // namespace splicer::plane
