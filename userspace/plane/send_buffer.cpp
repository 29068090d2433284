#include "plane/send_buffer.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "splicer/log.h"

namespace splicer::plane {
namespace {

constexpr const char* kWmemMax = "/proc/sys/net/core/wmem_max";

int read_wmem_max() {
    std::ifstream file(kWmemMax);
    int value = 0;
    file >> value;
    return value;
}

}  // namespace

int raise_send_buffer_cap(int bytes) {
    const int before = read_wmem_max();
    if (before >= bytes) {
        return before;
    }
    {
        std::ofstream file(kWmemMax);
        file << bytes << '\n';
    }
    const int after = read_wmem_max();
    if (after >= bytes) {
        log::notice("send_buffer_cap_raised", {{"sysctl", "net.core.wmem_max"},
                                               {"from", std::to_string(before)},
                                               {"to", std::to_string(after)},
                                               {"why", "sockmap plane: backend send buffers"}});
    } else {
        log::warning("send_buffer_cap_low",
                     {{"sysctl", "net.core.wmem_max"},
                      {"value", std::to_string(after)},
                      {"wanted", std::to_string(bytes)},
                      {"effect", "backend sockets keep TCP autotuning's send buffer"}});
    }
    return after;
}

void grow_send_buffer(int fd, int bytes, int cap) {
    // The kernel doubles what SO_SNDBUF asks for (bookkeeping overhead) and reports the double.
    int current = 0;
    socklen_t length = sizeof(current);
    if (::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &current, &length) == 0 && current >= 2 * bytes) {
        return;
    }
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof(bytes)) == 0) {
        return;
    }
    if (cap >= bytes) {
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
    }
}

}  // namespace splicer::plane
