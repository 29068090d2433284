#include "support/tls_test_client.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <memory>
#include <stdexcept>

#include "support/sockets.h"

namespace splicer::test {
namespace {

void set_timeouts(int fd, std::chrono::milliseconds timeout) {
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
    const timeval value{.tv_sec = static_cast<time_t>(micros / 1000000),
                        .tv_usec = static_cast<suseconds_t>(micros % 1000000)};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, sizeof(value));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &value, sizeof(value));
}

std::string openssl_error(const std::string& what) {
    return what + ": " + tls::take_openssl_error("no OpenSSL error queued");
}

// ALPN's wire form: each protocol prefixed by its length.
std::string alpn_wire(const std::vector<std::string>& protocols) {
    std::string wire;
    for (const std::string& protocol : protocols) {
        wire += static_cast<char>(protocol.size());
        wire += protocol;
    }
    return wire;
}

struct OpenSslStringFree {
    void operator()(char* text) const { OPENSSL_free(text); }
};

std::string serial_of(const X509* certificate) {
    if (certificate == nullptr) {
        return "";
    }
    const std::unique_ptr<BIGNUM, tls::OpenSslDeleter<BN_free>> number(
        ASN1_INTEGER_to_BN(X509_get0_serialNumber(certificate), nullptr));
    if (!number) {
        return "";
    }
    const std::unique_ptr<char, OpenSslStringFree> hex(BN_bn2hex(number.get()));
    return hex ? std::string(hex.get()) : "";
}

}  // namespace

TlsTestClient::TlsTestClient(const TlsClientOptions& options)
    : socket_(connect_to(options.port, false, options.timeout)),
      context_(SSL_CTX_new(TLS_client_method())) {
    set_timeouts(socket_.get(), options.timeout);
    if (!context_) {
        throw std::runtime_error(openssl_error("SSL_CTX_new"));
    }
    SSL_CTX_set_verify(context_.get(), SSL_VERIFY_NONE, nullptr);
    ssl_.reset(SSL_new(context_.get()));
    if (!ssl_ || SSL_set_fd(ssl_.get(), socket_.get()) != 1) {
        throw std::runtime_error(openssl_error("SSL_new"));
    }
    if (!options.servername.empty() &&
        SSL_set_tlsext_host_name(ssl_.get(), options.servername.c_str()) != 1) {
        throw std::runtime_error(openssl_error("SNI"));
    }
    if (!options.alpn.empty()) {
        const std::string wire = alpn_wire(options.alpn);
        // SSL_set_alpn_protos returns 0 on success, unlike most of libssl.
        if (SSL_set_alpn_protos(ssl_.get(), reinterpret_cast<const unsigned char*>(wire.data()),
                                static_cast<unsigned int>(wire.size())) != 0) {
            throw std::runtime_error(openssl_error("ALPN"));
        }
    }
    if (SSL_connect(ssl_.get()) != 1) {
        throw std::runtime_error(
            openssl_error("handshake with 127.0.0.1:" + std::to_string(options.port)));
    }
}

std::string TlsTestClient::peer_serial() const {
    const tls::X509Ptr peer(SSL_get1_peer_certificate(ssl_.get()));
    return serial_of(peer.get());
}

std::string TlsTestClient::peer_common_name() const {
    const tls::X509Ptr peer(SSL_get1_peer_certificate(ssl_.get()));
    if (!peer) {
        return "";
    }
    char name[256] = {};
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(peer.get()), NID_commonName, name,
                                  sizeof(name)) < 0) {
        return "";
    }
    return name;
}

std::string TlsTestClient::protocol() const {
    return SSL_get_version(ssl_.get());
}

std::string TlsTestClient::alpn() const {
    const unsigned char* data = nullptr;
    unsigned int length = 0;
    SSL_get0_alpn_selected(ssl_.get(), &data, &length);
    return data == nullptr ? "" : std::string(reinterpret_cast<const char*>(data), length);
}

bool TlsTestClient::read_more() {
    char buffer[16384];
    const int n = SSL_read(ssl_.get(), buffer, sizeof(buffer));
    if (n <= 0) {
        ERR_clear_error();
        return false;
    }
    buffered_.append(buffer, static_cast<std::size_t>(n));
    return true;
}

HttpResponse TlsTestClient::exchange(const std::string& request) {
    if (!write(request)) {
        return {};
    }
    return read_response();
}

bool TlsTestClient::write(const std::string& request) {
    std::size_t written = 0;
    while (written < request.size()) {
        const int n = SSL_write(ssl_.get(), request.data() + written,
                                static_cast<int>(request.size() - written));
        if (n <= 0) {
            ERR_clear_error();
            return false;
        }
        written += static_cast<std::size_t>(n);
    }
    return true;
}

HttpResponse TlsTestClient::read_response() {
    HttpResponse response;
    std::size_t head_end = std::string::npos;
    // Bounded: each read waits at most the socket timeout, and a head over 64 KiB is refused.
    while ((head_end = buffered_.find("\r\n\r\n")) == std::string::npos) {
        if (buffered_.size() > 65536 || !read_more()) {
            return response;
        }
    }
    response.raw_head = buffered_.substr(0, head_end + 4);
    buffered_.erase(0, head_end + 4);
    response.head = parse_head(response.raw_head);
    if (response.head.start_line.size() >= 12) {
        response.status = std::stoi(response.head.start_line.substr(9, 3));
    }
    const std::string length_text = response.head.header("content-length");
    const std::uint64_t length = length_text.empty() ? 0 : std::stoull(length_text);
    while (buffered_.size() < length) {
        if (buffered_.size() > (64U << 20) || !read_more()) {
            return response;
        }
    }
    response.body = buffered_.substr(0, length);
    response.body_bytes = length;
    buffered_.erase(0, length);
    response.complete = true;
    return response;
}

std::string TlsTestClient::wait_for_close(std::chrono::milliseconds timeout) {
    set_timeouts(socket_.get(), timeout);
    char buffer[4096];
    const int n = SSL_read(ssl_.get(), buffer, sizeof(buffer));
    if (n > 0) {
        return "data";
    }
    const int error = SSL_get_error(ssl_.get(), n);
    const int saved_errno = errno;
    ERR_clear_error();
    switch (error) {
        case SSL_ERROR_ZERO_RETURN:
            return "close_notify";
        case SSL_ERROR_WANT_READ:
            return "open";  // the receive timeout passed (EAGAIN)
        case SSL_ERROR_SYSCALL:
            if (saved_errno == ECONNRESET) {
                return "reset";
            }
            return saved_errno == EAGAIN || saved_errno == EWOULDBLOCK ? "open" : "eof";
        default:
            // OpenSSL 3 reports a FIN without close_notify as SSL_ERROR_SSL ("unexpected
            // eof while reading").
            return "eof";
    }
}

std::string certificate_serial(const std::filesystem::path& pem_file) {
    const tls::BioPtr file(BIO_new_file(pem_file.c_str(), "r"));
    if (!file) {
        ERR_clear_error();
        return "";
    }
    const tls::X509Ptr certificate(PEM_read_bio_X509(file.get(), nullptr, nullptr, nullptr));
    ERR_clear_error();
    return serial_of(certificate.get());
}

}  // namespace splicer::test
