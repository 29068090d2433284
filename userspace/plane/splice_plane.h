#pragma once

#include <memory>

#include "plane/data_plane.h"

namespace splicer::plane {

// io_uring IORING_OP_SPLICE through a pipe: source -> pipe -> sink, so bytes stay in the
// kernel (page references move, nothing is copied to userspace). A direction holds a pipe
// only while bytes are in it (plane/pipe_pool.h); with every pipe taken it copies that round
// through a buffer.
std::unique_ptr<DataPlane> make_splice_plane();

}  // namespace splicer::plane
