#include "support/tls_cipher_flush.h"

#include <sys/socket.h>

#include <cerrno>
#include <span>

namespace splicer::test {

int flush_pending_cipher(tls::Session& session, const UniqueFd& socket) {
    // Each pass sends at least one byte or ends: bounded by the bytes queued.
    for (;;) {
        const std::span<const std::byte> pending = session.pending_cipher();
        if (pending.empty()) {
            return 0;
        }
        const ssize_t sent =
            ::send(socket.get(), pending.data(), pending.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0) {
            // EINTR: the caller's poll() comes round again as it does for a full buffer.
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : errno;
        }
        if (sent == 0) {
            return 0;  // not for a non-empty send on TCP; never spin on it
        }
        session.consume_cipher(static_cast<std::size_t>(sent));
    }
}

}  // namespace splicer::test
