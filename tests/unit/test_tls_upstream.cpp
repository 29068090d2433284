// tls::UpstreamContext, the client side of an https route, by real handshakes against
// `openssl s_server` on loopback: verification on by default against the route's CA file or
// the system store, the backend's name checked against the request's Host, which is also sent
// as SNI (nginx's proxy_ssl_server_name on); verify: false accepts any certificate.

#include <openssl/err.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <catch2/catch.hpp>
#include <string>

#include "support/backends.h"
#include "support/sockets.h"
#include "support/test_certificates.h"
#include "tls/upstream_context.h"

namespace splicer::test {
namespace {

struct HandshakeOutcome {
    bool connected = false;
    std::string verify_result;  // X509_verify_cert_error_string of the result
};

// One blocking handshake (bounded by a 5 s socket timeout) as a route would make it for a
// request with Host `host`.
HandshakeOutcome handshake(const tls::UpstreamContext& context, std::uint16_t port,
                           const std::string& host) {
    const UniqueFd fd = connect_loopback(port);
    const timeval timeout{5, 0};
    REQUIRE(::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) == 0);
    auto ssl = context.new_connection(host);
    REQUIRE(ssl.has_value());
    REQUIRE(SSL_set_fd(ssl->get(), fd.get()) == 1);
    HandshakeOutcome outcome;
    outcome.connected = SSL_connect(ssl->get()) == 1;
    outcome.verify_result = X509_verify_cert_error_string(SSL_get_verify_result(ssl->get()));
    ERR_clear_error();
    return outcome;
}

std::unique_ptr<tls::UpstreamContext> upstream(bool verify, std::string ca_file = "") {
    tls::UpstreamSettings settings;
    settings.verify = verify;
    if (!ca_file.empty()) {
        settings.ca_file = ca_file;
    }
    auto context = tls::UpstreamContext::create(settings);
    REQUIRE(context.has_value());
    return std::move(context).value();
}

}  // namespace

TEST_CASE("https backend: verified against the CA file, name from the Host, SNI sent",
          "[tls_termination]") {
    const TestCertificates pki;
    // a.test's chain by default; b.test's (SANs b.test, *.wild.test) for SNI b.test only.
    OpensslServerOptions options;
    options.certificate = {pki.a_chain.string(), pki.a_key.string()};
    options.servername = "b.test";
    options.servername_certificate = {pki.b_chain.string(), pki.b_key.string()};
    const OpensslServer server(options);
    const auto verifying = upstream(true, pki.ca.string());

    const HandshakeOutcome right = handshake(*verifying, server.port(), "a.test");
    CHECK(right.connected);
    CHECK(right.verify_result == "ok");
    // b.test is answered with b's certificate only because the Host went out as SNI; without
    // it s_server would send a.test's, which does not name b.test.
    const HandshakeOutcome by_sni = handshake(*verifying, server.port(), "b.test");
    CHECK(by_sni.connected);
    CHECK(by_sni.verify_result == "ok");
    // A name neither certificate has: a.test's comes back and is refused.
    const HandshakeOutcome wrong_name = handshake(*verifying, server.port(), "c.test");
    CHECK_FALSE(wrong_name.connected);
    CHECK(wrong_name.verify_result == "hostname mismatch");
    // The default trust is the system store, which does not know the test CA.
    const HandshakeOutcome system_store = handshake(*upstream(true), server.port(), "a.test");
    CHECK_FALSE(system_store.connected);
    CHECK(system_store.verify_result == "unable to get local issuer certificate");
}

TEST_CASE("https backend: another issuer is refused unless verify is off, a bad ca_file too",
          "[tls_termination]") {
    const TestCertificates pki;
    OpensslServerOptions options;
    options.common_name = "a.test";  // self-signed, the right name, the wrong issuer
    const OpensslServer server(options);

    const HandshakeOutcome verified =
        handshake(*upstream(true, pki.ca.string()), server.port(), "a.test");
    CHECK_FALSE(verified.connected);
    CHECK(verified.verify_result == "self-signed certificate");
    // verify: false, the Snikket page's localhost case: encrypted, not authenticated.
    const HandshakeOutcome unverified = handshake(*upstream(false), server.port(), "127.0.0.1");
    CHECK(unverified.connected);

    // A ca_file that cannot be used is refused, naming it.
    tls::UpstreamSettings settings;
    settings.ca_file = pki.not_pem;
    auto context = tls::UpstreamContext::create(settings);
    REQUIRE_FALSE(context.has_value());
    CHECK(context.error().message == "\"" + pki.not_pem.string() + "\": holds no PEM certificate");
}

}  // namespace splicer::test
