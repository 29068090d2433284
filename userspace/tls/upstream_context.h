#pragma once
// The TLS client side of an https route (`backend: "https://..."`): one SSL_CTX per route,
// and per backend connection an SSL that sends the request's Host as SNI (nginx's
// proxy_ssl_server_name on) and, when verifying, checks the backend's certificate chain
// against the route's CA file (or the system store) and its name against that Host.
//
// verify: false (nginx's proxy_ssl_verify off, the Snikket page's localhost case) accepts any
// certificate: the connection is still encrypted, but not authenticated.
//
// Session reuse (nginx's proxy_ssl_session_reuse on): every request opens its own backend
// connection, so the last session a backend gave for a name is kept and offered on the next
// connection for that name: a backend that issues tickets is then reached with an abbreviated
// handshake. Only connections with SNI are cached (a session is bound to the name its
// certificate was checked for), at most kMaxCachedSessions names per route. One context is
// shared by the event loops of all workers: the cache has a lock.

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
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
    // only names; "[::1]" is taken as ::1), and, when verifying, the certificate must name it.
    // The caller attaches its transport (a BIO pair or an fd) and drives the handshake. When
    // verifying, an empty `host` is an error (the caller passes the backend's address instead).
    [[nodiscard]] Result<SslPtr> new_connection(std::string_view host) const;

    [[nodiscard]] SSL_CTX* get() const { return context_.get(); }
    [[nodiscard]] bool verifies() const { return verify_; }

    static constexpr std::size_t kMaxCachedSessions = 64;
    // How many names have a session kept (tests).
    [[nodiscard]] std::size_t cached_sessions() const;

private:
    UpstreamContext(SslCtxPtr context, bool verify)
        : context_(std::move(context)), verify_(verify) {}

    // OpenSSL's new-session callback: keeps `session` for its connection's SNI.
    static int on_new_session(SSL* ssl, SSL_SESSION* session);
    void keep_session(const std::string& name, SslSessionPtr session);
    [[nodiscard]] SslSessionPtr session_for(const std::string& name) const;

    SslCtxPtr context_;
    bool verify_;
    mutable std::mutex sessions_mutex_;
    std::map<std::string, SslSessionPtr, std::less<>> sessions_;
};

}  // namespace splicer::tls
