// The PROXY header's contents for a connection, and its send (proxy_header_send.h).

#include "daemon/proxy_header_send.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace splicer::daemon {

std::string proxy_alpn(const tls::ClientHello& hello, const config::Rule& rule) {
    for (const std::string& offered : hello.alpn_protocols) {
        if (std::find(rule.alpn_protocols.begin(), rule.alpn_protocols.end(), offered) !=
            rule.alpn_protocols.end()) {
            return offered.size() <= net::kMaxProxyTlvValue ? offered : std::string();
        }
    }
    return {};
}

std::string_view proxy_authority(std::string_view sni) {
    return sni.size() <= net::kMaxProxyTlvValue ? sni : std::string_view();
}

Result<std::string> proxy_header_for(net::ProxyVersion version, const net::SocketAddress& client,
                                     int client_fd, const net::SocketAddress& reached,
                                     const net::ProxyTlvs& tlvs) {
    if (reached.length != 0) {
        return net::encode_proxy_header(version, client, reached, tlvs);
    }
    net::SocketAddress local;
    local.length = sizeof(local.storage);
    if (::getsockname(client_fd, local.get(), &local.length) != 0) {
        return errno_error("PROXY header: getsockname");
    }
    return net::encode_proxy_header(version, client, local, tlvs);
}

Result<void> send_proxy_header(int backend_fd, std::string_view header) {
    const ssize_t sent =
        ::send(backend_fd, header.data(), header.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent < 0) {
        return errno_error("PROXY header: send");
    }
    if (static_cast<std::size_t>(sent) != header.size()) {
        return Error{"PROXY header: short send: " + std::to_string(sent) + " of " +
                     std::to_string(header.size()) + " bytes"};
    }
    return {};
}

}  // namespace splicer::daemon
