// The configuration `splicer run` uses without --config and without /etc/splicer/splicer.conf:
// Snikket behind splicer (DESIGN.md, "Interface"). It is ordinary config text, loaded by the
// same code as a user's file, so it can never drift from what a file could say.

#include <string_view>

#include "splicer/config.h"

namespace splicer::config {
namespace {

constexpr std::string_view kDefaultConfig =
    R"(# splicer's built-in configuration: Snikket behind splicer.
# Copy it to /etc/splicer/splicer.conf to change it; sslh's syntax works there too.

# IPv4 only: a second listener on "::" port 443 would also need its socket to be IPv6-only,
# and hosts with IPv6 disabled could not start with it. Add it in your own file where wanted:
#   { host: "::"; port: "443"; }
listen:
(
    { host: "0.0.0.0"; port: "443"; }
);

# Tried in order; the first rule whose probe and conditions match wins.
protocols:
(
    # XMPP over direct TLS (XEP-0368): Snikket's client port for TLS.
    { name: "tls"; host: "127.0.0.1"; port: "5223"; alpn_protocols: [ "xmpp-client" ]; },
    # Every other TLS connection: Snikket's web interface (SNIKKET_TWEAK_HTTPS_PORT).
    { name: "tls"; host: "127.0.0.1"; port: "5443"; },
    # Plain XMPP (STARTTLS follows on the backend connection).
    { name: "xmpp"; host: "127.0.0.1"; port: "5222"; }
);

# Seconds a connection may stay unidentified. XMPP and TLS clients speak first, so without
# on-timeout such a connection is closed.
timeout: 2;

splice_mode: "auto";    # sockmap where it loads, else splice
connect_timeout: 5;     # seconds to reach a backend
stall_timeout: 120;     # seconds bytes may wait for a peer that reads none of them; 0: off

http:
{
    listen: ( { host: "0.0.0.0"; port: "80"; } );
    # Headroom over the 16 MB Prosody accepts, as in Snikket's reverse proxy examples.
    max_body_size: "20M";
    routes:
    (
        # Everything to Snikket's HTTP port (SNIKKET_TWEAK_HTTP_PORT), including
        # /.well-known/acme-challenge/, so Snikket keeps renewing its own certificates.
        { hosts: [ "*" ]; backend: "127.0.0.1:5080"; }
    );
};
)";

}  // namespace

std::string_view embedded_default_text() {
    return kDefaultConfig;
}

}  // namespace splicer::config
