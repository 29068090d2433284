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
    return std::unique_ptr<UpstreamContext>(
        new UpstreamContext(std::move(context), settings.verify));
}

Result<SslPtr> UpstreamContext::new_connection(std::string_view host) const {
    SslPtr ssl(SSL_new(context_.get()));
    if (!ssl) {
        return context_error("creating a backend TLS connection");
    }
    const std::string name(host);
    const bool ip = is_ip_literal(name);
    if (!ip && !name.empty() && SSL_set_tlsext_host_name(ssl.get(), name.c_str()) != 1) {
        return context_error("setting SNI " + name);
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
