#include "tls/session.h"

#include <openssl/err.h>

#include "tls/server_context.h"
#include "tls/upstream_context.h"

namespace splicer::tls {

std::string_view to_string(Status status) {
    switch (status) {
        case Status::ok:
            return "ok";
        case Status::want_input:
            return "want_input";
        case Status::want_output:
            return "want_output";
        case Status::closed:
            return "closed";
        case Status::failed:
            return "failed";
    }
    return "?";
}

Result<Session> Session::create(const ServerContext& context, std::size_t buffer_bytes) {
    SslPtr ssl(SSL_new(context.get()));
    if (!ssl) {
        return Error{"creating a TLS session: " + take_openssl_error("out of memory")};
    }
    SSL_set_accept_state(ssl.get());
    return over_memory(std::move(ssl), buffer_bytes);
}

Result<Session> Session::create_client(const UpstreamContext& context, std::string_view host,
                                       std::size_t buffer_bytes) {
    auto ssl = context.new_connection(host);
    if (!ssl) {
        return ssl.error();
    }
    SSL_set_connect_state(ssl->get());
    return over_memory(std::move(ssl).value(), buffer_bytes);
}

Result<Session> Session::over_memory(SslPtr ssl, std::size_t buffer_bytes) {
    Session session(buffer_bytes, std::move(ssl));
    BioPtr bio = new_channel_bio(session.channel_);
    if (!bio) {
        return Error{"creating a TLS session's buffers: " + take_openssl_error("out of memory")};
    }
    BIO* shared = bio.release();
    SSL_set_bio(session.ssl_.get(), shared, shared);  // one reference, owned by the SSL from here
    // Moved into the result: the move points the BIO at the result's channel.
    return session;
}

Session::Session(Session&& other) noexcept
    : channel_(std::move(other.channel_)),
      ssl_(std::move(other.ssl_)),
      error_(std::move(other.error_)) {
    rebind();
}

Session& Session::operator=(Session&& other) noexcept {
    if (this != &other) {
        ssl_.reset();  // this session's own SSL and BIO go first: they point at channel_
        channel_ = std::move(other.channel_);
        ssl_ = std::move(other.ssl_);
        error_ = std::move(other.error_);
        rebind();
    }
    return *this;
}

void Session::rebind() {
    if (ssl_) {
        rebind_channel_bio(SSL_get_rbio(ssl_.get()), channel_);
    }
}

Status Session::status_of(int result) {
    const int error = SSL_get_error(ssl_.get(), result);
    switch (error) {
        case SSL_ERROR_WANT_READ:
            return Status::want_input;
        case SSL_ERROR_WANT_WRITE:
            return Status::want_output;
        case SSL_ERROR_ZERO_RETURN:
            return Status::closed;
        default:
            error_ = certificate_refused()
                         ? "certificate: " + std::string(X509_verify_cert_error_string(
                                                 SSL_get_verify_result(ssl_.get())))
                         : take_openssl_error(error == SSL_ERROR_SYSCALL ? "transport error"
                                                                         : "TLS error");
            ERR_clear_error();
            return Status::failed;
    }
}

bool Session::certificate_refused() const {
    // Only a verifying client fails on the peer's certificate; OpenSSL's own error for it is
    // the bare "certificate verify failed", the verifier's result says why. With verify off
    // the result may be set too, but it never fails the handshake.
    return SSL_is_server(ssl_.get()) == 0 &&
           (SSL_get_verify_mode(ssl_.get()) & SSL_VERIFY_PEER) != 0 &&
           SSL_get_verify_result(ssl_.get()) != X509_V_OK;
}

std::size_t Session::ingest(std::span<const std::byte> cipher) {
    return channel_.incoming.put(cipher);
}

std::span<std::byte> Session::ingest_room() {
    return channel_.incoming.room();
}

void Session::ingested(std::size_t bytes) {
    channel_.incoming.filled(bytes);
}

std::size_t Session::pending_input_bytes() const {
    return channel_.incoming.size();
}

void Session::ingest_end() {
    channel_.incoming.end();
}

Status Session::handshake() {
    if (SSL_is_init_finished(ssl_.get()) == 1) {
        return Status::ok;
    }
    ERR_clear_error();
    const int result = SSL_do_handshake(ssl_.get());
    return result == 1 ? Status::ok : status_of(result);
}

bool Session::handshake_done() const {
    return SSL_is_init_finished(ssl_.get()) == 1;
}

Session::Io Session::read_plain(std::span<std::byte> out) {
    if (out.empty()) {
        return {0, Status::ok};
    }
    ERR_clear_error();
    std::size_t got = 0;
    const int result = SSL_read_ex(ssl_.get(), out.data(), out.size(), &got);
    if (result == 1) {
        return {got, Status::ok};
    }
    return {0, status_of(result)};
}

Session::Io Session::write_plain(std::span<const std::byte> in) {
    if (in.empty()) {
        return {0, Status::ok};
    }
    ERR_clear_error();
    std::size_t written = 0;
    const int result = SSL_write_ex(ssl_.get(), in.data(), in.size(), &written);
    if (result == 1) {
        return {written, Status::ok};
    }
    return {0, status_of(result)};
}

std::span<const std::byte> Session::pending_cipher() {
    return channel_.outgoing.pending();
}

void Session::consume_cipher(std::size_t bytes) {
    channel_.outgoing.consume(bytes);
}

std::size_t Session::pending_cipher_bytes() const {
    return channel_.outgoing.size();
}

bool Session::holds_cipher_buffers() const {
    return channel_.incoming.holds_buffer() || channel_.outgoing.holds_buffer();
}

Status Session::close_notify() {
    if (channel_.outgoing.ended()) {
        return Status::ok;
    }
    if (SSL_is_init_finished(ssl_.get()) != 1) {
        // No close_notify mid-handshake (OpenSSL refuses it): the caller just closes.
        error_ = "close_notify before the handshake finished";
        return Status::failed;
    }
    ERR_clear_error();
    const int result = SSL_shutdown(ssl_.get());
    // 0: ours is queued, the peer's not read yet; 1: both done. Both mean ours is on its way.
    if (result >= 0) {
        channel_.outgoing.end();
        return Status::ok;
    }
    return status_of(result);
}

bool Session::peer_closed() const {
    return (SSL_get_shutdown(ssl_.get()) & SSL_RECEIVED_SHUTDOWN) != 0;
}

std::string_view Session::server_name() const {
    const char* name = SSL_get_servername(ssl_.get(), TLSEXT_NAMETYPE_host_name);
    return name != nullptr ? name : "";
}

std::string_view Session::alpn() const {
    const unsigned char* data = nullptr;
    unsigned int length = 0;
    SSL_get0_alpn_selected(ssl_.get(), &data, &length);
    return data != nullptr ? std::string_view(reinterpret_cast<const char*>(data), length) : "";
}

std::string_view Session::version() const {
    return SSL_get_version(ssl_.get());
}

bool Session::resumed() const {
    return SSL_session_reused(ssl_.get()) == 1;
}

}  // namespace splicer::tls
