#pragma once
// Whether this kernel offers kTLS (the "tls" TCP upper layer protocol, CONFIG_TLS): asked once
// at start-up by attaching it to a connected loopback TCP socket, the only way to know (the
// module may be built in, loadable or absent). Linux 6.18 on the development machine: absent,
// setsockopt(TCP_ULP, "tls") fails with ENOENT.

#include <string>

namespace splicer::net {

struct KtlsSupport {
    bool available = false;
    std::string reason;  // why not, or what was seen ("TCP_ULP tls accepted")
};

// Makes a loopback listener, connects to it, and tries TCP_ULP "tls" on the connected socket.
// Every socket is closed before it returns. Run while still privileged: the kernel may load
// the tls module for it (CAP_NET_ADMIN, request_module).
KtlsSupport probe_ktls();

}  // namespace splicer::net
