#include "plane/end_reason.h"

#include <netinet/tcp.h>

#include <cerrno>
#include <cstring>

#include "net/sockets.h"
#include "plane/flow.h"

namespace splicer::plane {

std::string peer_reset(std::size_t socket) {
    return socket == kClientToBackend ? "client_reset" : "backend_reset";
}

std::string failed_call(const char* call, int error, std::size_t socket) {
    if (error == ECONNRESET || error == EPIPE) {
        return peer_reset(socket);
    }
    // strerrorname_np (glibc 2.32): "ETIMEDOUT"; null for a number it does not know.
    const char* name = error > 0 ? ::strerrorname_np(error) : nullptr;
    return std::string(call) + "_error:" + (name != nullptr ? name : std::to_string(error));
}

bool ended_by_reset(int fd, bool write_shut) {
    if (write_shut) {
        return false;
    }
    return net::tcp_state(fd) == TCP_CLOSE;
}

}  // namespace splicer::plane
