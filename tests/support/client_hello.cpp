#include "support/client_hello.h"

#include <openssl/ssl.h>

#include <memory>
#include <stdexcept>

namespace splicer::test {
namespace {

struct CtxDeleter {
    void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
struct SslDeleter {
    void operator()(SSL* ssl) const { SSL_free(ssl); }
};

constexpr unsigned kPaddingExtensionType = 0xff42;  // private-use range, unknown to servers

int add_padding(SSL*, unsigned, unsigned, const unsigned char** out, size_t* outlen, X509*,
                size_t, int*, void* arg) {
    const auto* padding = static_cast<const std::string*>(arg);
    *out = reinterpret_cast<const unsigned char*>(padding->data());
    *outlen = padding->size();
    return 1;
}

void free_padding(SSL*, unsigned, unsigned, const unsigned char*, void*) {}

}  // namespace

std::string make_client_hello(const HelloOptions& options) {
    std::unique_ptr<SSL_CTX, CtxDeleter> ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx) {
        throw std::runtime_error("SSL_CTX_new");
    }
    if (options.tls12_only) {
        SSL_CTX_set_max_proto_version(ctx.get(), TLS1_2_VERSION);
    }
    if (options.max_fragment > 0) {
        SSL_CTX_set_max_send_fragment(ctx.get(), options.max_fragment);
    }
    // Lives until the hello is written: OpenSSL reads it through `arg` in add_padding.
    const std::string padding(options.padding_extension_bytes, '\x5a');
    if (!padding.empty()) {
        SSL_CTX_add_custom_ext(ctx.get(), kPaddingExtensionType, SSL_EXT_CLIENT_HELLO,
                               add_padding, free_padding, const_cast<std::string*>(&padding),
                               nullptr, nullptr);
    }
    std::unique_ptr<SSL, SslDeleter> ssl(SSL_new(ctx.get()));
    BIO* from_server = BIO_new(BIO_s_mem());
    BIO* to_server = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl.get(), from_server, to_server);  // ssl now owns both BIOs
    SSL_set_connect_state(ssl.get());
    if (!options.server_name.empty()) {
        SSL_set_tlsext_host_name(ssl.get(), options.server_name.c_str());
    }
    if (!options.alpn.empty()) {
        std::string wire;
        for (const std::string& protocol : options.alpn) {
            wire += static_cast<char>(protocol.size());
            wire += protocol;
        }
        SSL_set_alpn_protos(ssl.get(), reinterpret_cast<const unsigned char*>(wire.data()),
                            static_cast<unsigned>(wire.size()));
    }
    SSL_do_handshake(ssl.get());  // writes the hello, then wants to read: expected
    std::string hello;
    char buffer[4096];
    int n = 0;
    while ((n = BIO_read(to_server, buffer, sizeof(buffer))) > 0) {
        hello.append(buffer, static_cast<std::size_t>(n));
    }
    if (hello.empty()) {
        throw std::runtime_error("libssl wrote no ClientHello");
    }
    return hello;
}

}  // namespace splicer::test
