#include "security/inherited_fds.h"

#include <unistd.h>

#include <climits>

namespace splicer::security {

void close_all_fds_but(int keep) {
    const bool closed = ::close_range(3, static_cast<unsigned>(keep) - 1, 0) == 0 &&
                        ::close_range(static_cast<unsigned>(keep) + 1, UINT_MAX, 0) == 0;
    if (!closed) {
        // close_range(2) needs Linux >= 5.9 and may be filtered by seccomp: one by one.
        const long limit = ::sysconf(_SC_OPEN_MAX);
        for (long fd = 3; fd < (limit > 0 ? limit : 65536); ++fd) {
            if (fd != keep) {
                ::close(static_cast<int>(fd));
            }
        }
    }
}

}  // namespace splicer::security
