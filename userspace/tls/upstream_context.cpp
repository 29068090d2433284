#include "tls/upstream_context.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <string>

namespace splicer::tls {
namespace {

Error context_error(const std::string& what) {
    return Error{what + ": " + take_openssl_error("failed")};
}

bool is_ip_literal(const std::string& host) {
    in6_addr address{};
    return ::inet_pton(AF_INET, host.c_str(), &address) == 1 ||
           ::inet_pton(AF_INET6, host.c_str(), &address) == 1;
}

// Every certificate of the PEM file `ca_file` becomes a trust anchor of `context`.
Result<void> load_ca_file(SSL_CTX* context, const std::filesystem::path& ca_file,
                          const FileReader& read_file) {
    auto pem = read_file(ca_file);
    if (!pem) {
        return pem.error();
    }
    auto chain = parse_certificate_chain(*pem);
    if (!chain) {
        return chain.error().with_context(quoted_path(ca_file));
    }
    X509_STORE* store = SSL_CTX_get_cert_store(context);
    if (X509_STORE_add_cert(store, chain->leaf.get()) != 1) {
        return context_error("adding " + quoted_path(ca_file));
    }
    for (int i = 0; i < sk_X509_num(chain->intermediates.get()); ++i) {
        if (X509_STORE_add_cert(store, sk_X509_value(chain->intermediates.get(), i)) != 1) {
            return context_error("adding " + quoted_path(ca_file));
        }
    }
    return {};
}

}  // namespace

Result<std::unique_ptr<UpstreamContext>> UpstreamContext::create(const UpstreamSettings& settings) {
    SslCtxPtr context(SSL_CTX_new(TLS_client_method()));
    if (!context) {
        return context_error("creating the TLS client context");
    }
    // The backends are ours (Snikket, a local web server): nothing older than TLS 1.2 is
    // needed, and the server side refuses it too.
    if (SSL_CTX_set_min_proto_version(context.get(), TLS1_2_VERSION) != 1) {
        return context_error("limiting the backend TLS versions");
    }
    if (settings.verify) {
        SSL_CTX_set_verify(context.get(), SSL_VERIFY_PEER, nullptr);
        if (settings.ca_file) {
            const FileReader read_file =
                settings.read_file ? settings.read_file : FileReader(read_file_bytes);
            if (auto loaded = load_ca_file(context.get(), *settings.ca_file, read_file); !loaded) {
                return loaded.error();
            }
        } else if (SSL_CTX_set_default_verify_paths(context.get()) != 1) {
            return context_error("loading the system CA store");
        }
    } else {
        SSL_CTX_set_verify(context.get(), SSL_VERIFY_NONE, nullptr);
    }
    // Record buffers (about 34 KiB) only while a record is under way, as on the server side:
    // a backend connection kept for reuse is idle most of its life.
    SSL_CTX_set_mode(context.get(), SSL_MODE_RELEASE_BUFFERS);
    // Sessions go to on_new_session only (no internal store: lookups are by name, ours).
    SSL_CTX_set_session_cache_mode(context.get(),
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(context.get(), &UpstreamContext::on_new_session);
    std::unique_ptr<UpstreamContext> self(new UpstreamContext(std::move(context), settings.verify));
    SSL_CTX_set_app_data(self->context_.get(), self.get());
    return self;
}

int UpstreamContext::on_new_session(SSL* ssl, SSL_SESSION* session) {
    auto* self = static_cast<UpstreamContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (self == nullptr || name == nullptr || SSL_SESSION_is_resumable(session) != 1) {
        return 0;  // not kept
    }
    // A copy: OpenSSL marks the connection's own session object not resumable when the SSL is
    // freed without a close_notify sent, which is how a backend connection often ends.
    SslSessionPtr copy(SSL_SESSION_dup(session));
    if (copy) {
        self->keep_session(name, std::move(copy));
    }
    return 0;  // OpenSSL keeps its reference to the original
}

void UpstreamContext::keep_session(const std::string& name, SslSessionPtr session) {
    const std::lock_guard lock(sessions_mutex_);
    auto found = sessions_.find(name);
    if (found != sessions_.end()) {
        found->second = std::move(session);
        return;
    }
    if (sessions_.size() >= kMaxCachedSessions) {
        // Names come from clients' Host headers (a "*" route takes any): a flood of names
        // only churns the cache, it never grows past the bound.
        sessions_.erase(sessions_.begin());
    }
    sessions_.emplace(name, std::move(session));
}

SslSessionPtr UpstreamContext::session_for(const std::string& name) const {
    const std::lock_guard lock(sessions_mutex_);
    const auto found = sessions_.find(name);
    if (found == sessions_.end()) {
        return {};
    }
    SSL_SESSION_up_ref(found->second.get());
    return SslSessionPtr(found->second.get());
}

std::size_t UpstreamContext::cached_sessions() const {
    const std::lock_guard lock(sessions_mutex_);
    return sessions_.size();
}

Result<SslPtr> UpstreamContext::new_connection(std::string_view host) const {
    SslPtr ssl(SSL_new(context_.get()));
    if (!ssl) {
        return context_error("creating a backend TLS connection");
    }
    // An IPv6 Host keeps its brackets ("[::1]", http::host_without_port): the address is
    // inside.
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    const std::string name(host);
    const bool ip = is_ip_literal(name);
    if (!ip && !name.empty()) {
        if (SSL_set_tlsext_host_name(ssl.get(), name.c_str()) != 1) {
            return context_error("setting SNI " + name);
        }
        // The last session this backend gave for the name, if any: offered for resumption
        // (the backend may still insist on a full handshake).
        if (const SslSessionPtr session = session_for(name);
            session && SSL_set_session(ssl.get(), session.get()) != 1) {
            return context_error("offering the kept session for " + name);
        }
    }
    if (verify_) {
        if (name.empty()) {
            // Without a name OpenSSL checks the chain only: any certificate the CA ever
            // issued would pass for this backend.
            return Error{"no host name to check the backend's certificate against"};
        }
        // The certificate must name the host: a DNS name against its subjectAltName DNS
        // entries, an IP literal against its IP entries.
        X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        const int set = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                           : X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
        if (set != 1) {
            return context_error("setting the name to verify " + name);
        }
    }
    return ssl;
}

}  // namespace splicer::tls
