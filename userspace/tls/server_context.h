#pragma once
// The TLS server side of a terminating rule (issue 14, point 2): one SSL_CTX that every
// terminated connection's tls::Session is made from.
//
// - TLS 1.2 and 1.3 only, Mozilla's "intermediate" ciphers and groups (server_context.cpp
//   cites the guideline version).
// - SNI picks the entry whose certificate names the host (subjectAltName DNS names; an exact
//   name before a one-label wildcard "*.example.com"); no SNI, or no match: the first entry,
//   as nginx's default_server.
// - ALPN: only "http/1.1" (the proxy behind speaks HTTP/1.1 only). A client offering ALPN
//   without http/1.1 gets the fatal no_application_protocol alert (RFC 7301 section 3.2, and
//   what nginx 1.22 on this machine answers); a client offering no ALPN is accepted.
// - Resumption by session tickets only (TLS 1.2 RFC 5077 tickets and TLS 1.3 PSK tickets),
//   sealed with in-memory keys rotated every `ticket_key_rotation` (tls/ticket_keys.h); the
//   server-side session cache is off. Every TLS 1.3 resumption gets a fresh ticket,
//   so a client that resumes keeps resuming.
// - OCSP stapling for an entry given a DER response file, when the client asks (status_request).

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "splicer/result.h"
#include "tls/openssl_handles.h"
#include "tls/pem_files.h"
#include "tls/ticket_keys.h"

namespace splicer::tls {

struct CertificateFiles {
    std::filesystem::path certificate;    // PEM: the leaf, then its intermediates (full chain)
    std::filesystem::path key;            // PEM private key, unencrypted
    std::filesystem::path ocsp_response;  // DER OCSP response to staple; empty: none
};

struct ServerSettings {
    std::vector<CertificateFiles> certificates;  // at least one; the first is the default
    std::chrono::seconds ticket_key_rotation{std::chrono::hours(1)};
    Clock clock;           // empty: std::chrono::steady_clock::now (tests step their own)
    FileReader read_file;  // empty: read_file_bytes (pem_files.h)
};

class ServerContext {
public:
    // Reads and checks every file; errors name the file ("key "/k.pem" does not match
    // certificate "/c.pem""). Not movable: the SSL_CTX's callbacks point at this object, so
    // it must outlive every Session made from it (after a reload, connections still using
    // the old context keep it alive: the handler will hold it by shared_ptr).
    static Result<std::unique_ptr<ServerContext>> create(const ServerSettings& settings);

    ServerContext(const ServerContext&) = delete;
    ServerContext& operator=(const ServerContext&) = delete;
    ~ServerContext();

    [[nodiscard]] SSL_CTX* get() const { return context_.get(); }
    // How many ticket keys have been made so far (a rotation adds one).
    [[nodiscard]] std::uint64_t ticket_key_generation() const { return ticket_keys_.generation(); }

private:
    struct Entry {
        CertificateChain chain;
        EvpPkeyPtr key;
        std::string ocsp_response;  // DER bytes; empty: no stapling
    };

    explicit ServerContext(const ServerSettings& settings);

    // The entry for `host_name`, or the first one.
    [[nodiscard]] const Entry& entry_for(const char* host_name) const;
    [[nodiscard]] const Entry* entry_of(const X509* leaf) const;

    static int on_server_name(SSL* ssl, int* alert, void* self);
    static int on_alpn(SSL* ssl, const unsigned char** out, unsigned char* out_length,
                       const unsigned char* in, unsigned int in_length, void* self);
    static int on_status_request(SSL* ssl, void* self);
    static int on_ticket_key(SSL* ssl, unsigned char* key_name, unsigned char* iv,
                             EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int encrypt);

    SslCtxPtr context_;
    std::vector<Entry> entries_;
    TicketKeys ticket_keys_;
    // AES-256-CBC for the tickets, fetched once: EVP_aes_256_cbc() is a legacy object that
    // OpenSSL 3 fetches anew (a name lookup and a method-store search, under locks) on every
    // EVP_EncryptInit_ex or EVP_DecryptInit_ex, and a resumption seals and opens a ticket.
    EvpCipherPtr ticket_cipher_;
};

}  // namespace splicer::tls
