#include "tls/server_context.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/rand.h>
#include <openssl/tls1.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <string_view>

namespace splicer::tls {
namespace {

// Mozilla Server Side TLS, "intermediate" configuration, guideline version 5.7
// (https://ssl-config.mozilla.org/guidelines/5.7.json): TLS 1.2 and 1.3; for 1.2 the ECDHE
// (and DHE with ffdhe2048) AEAD suites below, for 1.3 the three standard suites; curves
// X25519, prime256v1, secp384r1; server cipher preference off (the clients it admits all
// offer strong suites, and they know best whether they have AES hardware).
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
constexpr const char* kTls13Ciphers =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
constexpr const char* kGroups = "X25519:prime256v1:secp384r1";

constexpr std::string_view kHttp11 = "http/1.1";

Error context_error(const std::string& what) {
    return Error{what + ": " + take_openssl_error("failed")};
}

// Whether a client resuming with a ticket gets a new one.
bool renew_ticket(bool sealed_with_current_key, int version) {
    // TLS 1.3 tickets are for one use (RFC 8446 appendix C.4): OpenSSL's client marks the
    // session it resumed not resumable (tls_finish_handshake, when it caches client
    // sessions, as wrk does), and OpenSSL's server sends a ticket after a resumption only
    // when the callback asks for a renewal. Without one the client had no ticket left and
    // made a full handshake the next time (scripts/bench tls_term_new with wrk: every other
    // ClientHello came without a ticket, 318 bytes against 605). nginx renews every TLS 1.3
    // ticket for the same reason. A TLS 1.2 ticket may be offered again: renewed only once
    // its key is the previous one.
    return version == TLS1_3_VERSION || !sealed_with_current_key;
}

}  // namespace

ServerContext::ServerContext(const ServerSettings& settings)
    : ticket_keys_(settings.ticket_key_rotation, settings.clock) {}

ServerContext::~ServerContext() = default;

Result<std::unique_ptr<ServerContext>> ServerContext::create(const ServerSettings& settings) {
    if (settings.certificates.empty()) {
        return Error{"no certificate given"};
    }
    if (settings.ticket_key_rotation.count() <= 0) {
        return Error{"ticket key rotation must be positive"};
    }
    const FileReader read_file =
        settings.read_file ? settings.read_file : FileReader(read_file_bytes);
    std::unique_ptr<ServerContext> self(new ServerContext(settings));
    for (const CertificateFiles& files : settings.certificates) {
        const std::string where = "certificate " + quoted_path(files.certificate);
        auto certificate_pem = read_file(files.certificate);
        if (!certificate_pem) {
            return certificate_pem.error();
        }
        auto chain = parse_certificate_chain(*certificate_pem);
        if (!chain) {
            return chain.error().with_context(quoted_path(files.certificate));
        }
        auto key_pem = read_file(files.key);
        if (!key_pem) {
            return key_pem.error();
        }
        auto key = parse_private_key(*key_pem);
        if (!key) {
            return key.error().with_context(quoted_path(files.key));
        }
        if (X509_check_private_key(chain->leaf.get(), key->get()) != 1) {
            ERR_clear_error();
            return Error{"key " + quoted_path(files.key) + " does not match " + where};
        }
        Entry entry{std::move(*chain), std::move(*key), {}};
        if (!files.ocsp_response.empty()) {
            auto response = read_file(files.ocsp_response);
            if (!response) {
                return response.error();
            }
            const auto* bytes = reinterpret_cast<const unsigned char*>(response->data());
            OCSP_RESPONSE* parsed =
                d2i_OCSP_RESPONSE(nullptr, &bytes, static_cast<long>(response->size()));
            if (parsed == nullptr) {
                ERR_clear_error();
                return Error{quoted_path(files.ocsp_response) + " holds no DER OCSP response"};
            }
            OCSP_RESPONSE_free(parsed);
            entry.ocsp_response = std::move(*response);
        }
        self->entries_.push_back(std::move(entry));
    }

    self->context_.reset(SSL_CTX_new(TLS_server_method()));
    SSL_CTX* context = self->context_.get();
    if (context == nullptr) {
        return context_error("creating the TLS context");
    }
    if (SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(context, TLS1_3_VERSION) != 1) {
        return context_error("limiting the TLS versions to 1.2 and 1.3");
    }
    if (SSL_CTX_set_cipher_list(context, kTls12Ciphers) != 1 ||
        SSL_CTX_set_ciphersuites(context, kTls13Ciphers) != 1) {
        return context_error("setting the ciphers");
    }
    if (SSL_CTX_set1_groups_list(context, kGroups) != 1) {
        return context_error("setting the key exchange groups");
    }
    // DHE suites with the RFC 7919 group matching the certificate's strength (ffdhe2048 for
    // a 2048-bit RSA key, as Mozilla's guideline asks).
    SSL_CTX_set_dh_auto(context, 1);
    SSL_CTX_clear_options(context, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
    // Client-initiated renegotiation costs the server a handshake per request for nothing.
    SSL_CTX_set_options(context, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    // Tickets only: a cache would be per process memory that a restart or a second worker
    // loses anyway, and the tickets carry the session themselves.
    SSL_CTX_set_session_cache_mode(context, SSL_SESS_CACHE_OFF);
    // The session's buffers move (the io_uring handler hands different spans) and may be
    // taken in parts; idle connections give back their 34 KiB of record buffers.
    SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                  SSL_MODE_RELEASE_BUFFERS);

    const Entry& first = self->entries_.front();
    if (SSL_CTX_use_cert_and_key(context, first.chain.leaf.get(), first.key.get(),
                                 first.chain.intermediates.get(), 1) != 1) {
        return context_error("using " + quoted_path(settings.certificates.front().certificate));
    }
    self->ticket_cipher_.reset(EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr));
    if (!self->ticket_cipher_) {
        return context_error("fetching the ticket cipher");
    }
    SSL_CTX_set_app_data(context, self.get());
    SSL_CTX_set_tlsext_servername_callback(context, &ServerContext::on_server_name);
    SSL_CTX_set_tlsext_servername_arg(context, self.get());
    SSL_CTX_set_alpn_select_cb(context, &ServerContext::on_alpn, self.get());
    SSL_CTX_set_tlsext_status_cb(context, &ServerContext::on_status_request);
    SSL_CTX_set_tlsext_status_arg(context, self.get());
    if (SSL_CTX_set_tlsext_ticket_key_evp_cb(context, &ServerContext::on_ticket_key) != 1) {
        return context_error("installing the ticket key callback");
    }
    return self;
}

const ServerContext::Entry& ServerContext::entry_for(const char* host_name) const {
    if (host_name == nullptr || entries_.size() == 1) {
        // One certificate serves every name (a name it does not carry gets it too): no
        // X509_check_host, which decodes the certificate's subjectAltName anew per call, on
        // every handshake.
        return entries_.front();
    }
    // Exact names first, then wildcards, as nginx orders server_name matches. X509_check_host
    // compares case-insensitively, takes a wildcard for one whole leftmost label only, and
    // with NEVER_CHECK_SUBJECT looks at the subjectAltName DNS names alone.
    const std::size_t length = std::strlen(host_name);
    for (const unsigned int wildcards : {unsigned{X509_CHECK_FLAG_NO_WILDCARDS}, 0U}) {
        for (const Entry& entry : entries_) {
            const unsigned int flags = wildcards | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT |
                                       X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS;
            if (X509_check_host(entry.chain.leaf.get(), host_name, length, flags, nullptr) == 1) {
                return entry;
            }
        }
    }
    return entries_.front();
}

const ServerContext::Entry* ServerContext::entry_of(const X509* leaf) const {
    for (const Entry& entry : entries_) {
        if (entry.chain.leaf.get() == leaf) {
            return &entry;
        }
    }
    return nullptr;
}

int ServerContext::on_server_name(SSL* ssl, int* alert, void* self) {
    const auto& context = *static_cast<const ServerContext*>(self);
    const Entry& entry = context.entry_for(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
    if (&entry == &context.entries_.front()) {
        return SSL_TLSEXT_ERR_OK;  // the context's own certificate
    }
    // Set on this connection only; the certificate is sent later in the handshake, so the
    // switch here is in time (OpenSSL 3 picks the certificate after this callback).
    if (SSL_use_cert_and_key(ssl, entry.chain.leaf.get(), entry.key.get(),
                             entry.chain.intermediates.get(), 1) != 1) {
        ERR_clear_error();
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

int ServerContext::on_alpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* out_length,
                           const unsigned char* in, unsigned int in_length, void* /*self*/) {
    // `in` is the client's list: length-prefixed names. OpenSSL has checked its framing.
    unsigned int at = 0;
    while (at < in_length) {
        const unsigned int length = in[at];
        if (length > in_length - at - 1) {
            break;
        }
        const std::string_view name(reinterpret_cast<const char*>(in + at + 1), length);
        if (name == kHttp11) {
            *out = in + at + 1;
            *out_length = static_cast<unsigned char>(length);
            return SSL_TLSEXT_ERR_OK;
        }
        at += 1 + length;
    }
    // RFC 7301 3.2: no protocol in common is a fatal no_application_protocol alert (OpenSSL
    // sends that alert for this return value). nginx does the same since 1.21.4.
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

int ServerContext::on_status_request(SSL* ssl, void* self) {
    const auto& context = *static_cast<const ServerContext*>(self);
    const Entry* entry = context.entry_of(SSL_get_certificate(ssl));
    if (entry == nullptr || entry->ocsp_response.empty()) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    // OpenSSL takes ownership of the buffer and frees it with the connection.
    void* copy = OPENSSL_memdup(entry->ocsp_response.data(), entry->ocsp_response.size());
    if (copy == nullptr) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    SSL_set_tlsext_status_ocsp_resp(ssl, static_cast<unsigned char*>(copy),
                                    static_cast<long>(entry->ocsp_response.size()));
    return SSL_TLSEXT_ERR_OK;
}

int ServerContext::on_ticket_key(SSL* ssl, unsigned char* key_name, unsigned char* iv,
                                 EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int encrypt) {
    auto& context = *static_cast<ServerContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
    const auto set_mac_key = [mac](TicketKey& key) {
        char digest[] = "SHA256";
        const OSSL_PARAM params[] = {
            OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.mac_key.data(),
                                              key.mac_key.size()),
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
            OSSL_PARAM_construct_end()};
        return EVP_MAC_CTX_set_params(mac, params) == 1;
    };
    const EVP_CIPHER* ticket_cipher = context.ticket_cipher_.get();
    const int iv_length = EVP_CIPHER_get_iv_length(ticket_cipher);
    if (encrypt == 1) {
        std::optional<TicketKey> key = context.ticket_keys_.sealing_key();
        if (!key) {
            return 0;  // no ticket this time; the handshake goes on
        }
        std::memcpy(key_name, key->name.data(), key->name.size());
        if (RAND_bytes(iv, iv_length) != 1 ||
            EVP_EncryptInit_ex(cipher, ticket_cipher, nullptr, key->cipher_key.data(), iv) != 1 ||
            !set_mac_key(*key)) {
            return -1;
        }
        return 1;
    }
    std::array<unsigned char, 16> name{};
    std::memcpy(name.data(), key_name, name.size());
    std::optional<TicketKeys::Found> found = context.ticket_keys_.opening_key(name);
    if (!found) {
        return 0;  // an unknown or expired key: a full handshake
    }
    if (!set_mac_key(found->key) ||
        EVP_DecryptInit_ex(cipher, ticket_cipher, nullptr, found->key.cipher_key.data(), iv) != 1) {
        return -1;
    }
    return renew_ticket(found->current, SSL_version(ssl)) ? 2 : 1;
}

}  // namespace splicer::tls
