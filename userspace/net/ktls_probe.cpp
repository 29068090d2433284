#include "net/ktls_probe.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "splicer/unique_fd.h"

namespace splicer::net {

KtlsSupport probe_ktls() {
    const auto failed = [](const char* step) {
        return KtlsSupport{false, std::string(step) + ": " + std::strerror(errno)};
    };
    UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!listener) {
        return failed("probe socket");
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        ::listen(listener.get(), 1) != 0 ||
        ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        return failed("probe listener");
    }
    UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    // Blocking, on loopback: the handshake completes in the connect call.
    if (!client ||
        ::connect(client.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
        return failed("probe connect");
    }
    // The ULP attaches only to an established socket (ENOTCONN otherwise).
    if (::setsockopt(client.get(), SOL_TCP, TCP_ULP, "tls", sizeof("tls") - 1) != 0) {
        if (errno == ENOENT) {
            return {false, "the kernel has no tls ULP (CONFIG_TLS): TCP_ULP \"tls\" gave ENOENT"};
        }
        return failed("TCP_ULP \"tls\"");
    }
    return {true, "TCP_ULP \"tls\" accepted"};
}

}  // namespace splicer::net
