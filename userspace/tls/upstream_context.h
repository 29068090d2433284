#pragma once
// The TLS client side of an https route (`backend: "https://..."`): one SSL_CTX per route,
// and per backend connection an SSL that sends the request's Host as SNI (nginx's
// proxy_ssl_server_name on) and, when verifying, checks the backend's certificate chain
// against the route's CA file (or the system store) and its name against that Host.
//
// verify: false (nginx's proxy_ssl_verify off, the Snikket page's localhost case) accepts any
// certificate: the connection is still encrypted, but not authenticated.

#include <filesystem>
#include <memory>
#include <optional>
#include <string_view>

#include "splicer/result.h"
#include "tls/openssl_handles.h"
#include "tls/pem_files.h"

namespace splicer::tls {

struct UpstreamSettings {
    bool verify = true;
    std::optional<std::filesystem::path> ca_file;  // PEM CAs; unset: the system store
    FileReader read_file;                          // empty: read_file_bytes
};

class UpstreamContext {
public:
    // Errors name the CA file ("cannot read "/ca.pem": ...", ""/ca.pem" holds no PEM
    // certificate").
    static Result<std::unique_ptr<UpstreamContext>> create(const UpstreamSettings& settings);

    // An SSL in client mode for one connection to a backend reached for `host` (the request's
    // Host without port): SNI set to it unless it is an IP literal (RFC 6066 section 3 allows
    // only names), and, when verifying, the certificate must name it. The caller attaches
    // its transport (a BIO pair or an fd) and drives the handshake. When verifying, an empty
    // `host` is an error (the caller passes the backend's address instead).
    [[nodiscard]] Result<SslPtr> new_connection(std::string_view host) const;

    [[nodiscard]] SSL_CTX* get() const { return context_.get(); }
    [[nodiscard]] bool verifies() const { return verify_; }

private:
    UpstreamContext(SslCtxPtr context, bool verify)
        : context_(std::move(context)), verify_(verify) {}

    SslCtxPtr context_;
    bool verify_;
};

}  // namespace splicer::tls
