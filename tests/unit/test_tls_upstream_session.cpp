// tls::Session's client side (Session::create_client), the connection a terminating splicer
// makes to an https:// backend, driven over memory and a real loopback socket exactly as the
// backend transport drives it. Its peers are real: `openssl s_server -www`, or an in-process
// tls::ServerContext session that reports the SNI it saw. Verification is on by default
// (against the route's CA file or the system store, the name checked against the Host),
// and every refusal is named by the verifier's reason, which the access log carries.

#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "support/backends.h"
#include "support/sockets.h"
#include "support/test_certificates.h"
#include "support/tls_session_client.h"
#include "support/tls_session_server.h"
#include "tls/server_context.h"
#include "tls/session.h"
#include "tls/upstream_context.h"

namespace splicer::test {
namespace {

std::unique_ptr<tls::UpstreamContext> upstream_context(bool verify, const std::string& ca_file) {
    tls::UpstreamSettings settings;
    settings.verify = verify;
    if (!ca_file.empty()) {
        settings.ca_file = ca_file;
    }
    auto context = tls::UpstreamContext::create(settings);
    if (!context) {
        FAIL("UpstreamContext::create: " << context.error().message);
    }
    return std::move(context).value();
}

// One client session for `host` against the server on `port`, asking `request` once the
// handshake is done.
TlsClientReport connect_as(const tls::UpstreamContext& context, std::uint16_t port,
                           const std::string& host, const std::string& request = {}) {
    auto session = tls::Session::create_client(context, host);
    if (!session) {
        FAIL("Session::create_client: " << session.error().message);
    }
    const UniqueFd socket = connect_to(port);
    return run_tls_client(*session, socket, request);
}

}  // namespace

TEST_CASE("upstream TLS session: the right CA and name complete the handshake, Host is the SNI",
          "[tls_termination]") {
    const TestCertificates& pki = shared_pki();
    auto server_context =
        tls::ServerContext::create({.certificates = {{pki.a_chain, pki.a_key, {}}}});
    REQUIRE(server_context);
    TlsSessionServer server(**server_context, TlsServerBehaviour::greet_and_close);
    const auto verifying = upstream_context(true, pki.ca.string());

    const TlsClientReport report = connect_as(*verifying, server.port(), "a.test");
    INFO(report.error);
    CHECK(report.error.empty());
    CHECK(report.handshake_done);
    CHECK(report.server_name == "a.test");
    CHECK(report.version == "TLSv1.3");
    // The server greets with the SNI it received, then ends with its close_notify.
    CHECK(report.received == "hello a.test\n");
    CHECK(report.peer_close_notify);
    const auto seen = server.next_report();
    REQUIRE(seen);
    CHECK(seen->server_name == "a.test");
}

TEST_CASE("upstream TLS session: an IP literal Host sends no SNI", "[tls_termination]") {
    const TestCertificates& pki = shared_pki();
    auto server_context =
        tls::ServerContext::create({.certificates = {{pki.a_chain, pki.a_key, {}}}});
    REQUIRE(server_context);
    TlsSessionServer server(**server_context, TlsServerBehaviour::greet_and_close);
    // RFC 6066 section 3: SNI carries names only. Unverified, since a's certificate names no
    // address: only what went on the wire is checked here.
    const auto host = GENERATE(as<std::string>{}, "127.0.0.1", "::1", "[::1]");
    CAPTURE(host);
    const TlsClientReport report = connect_as(*upstream_context(false, ""), server.port(), host);
    INFO(report.error);
    CHECK(report.handshake_done);
    CHECK(report.server_name.empty());
    CHECK(report.received == "hello -\n");
    const auto seen = server.next_report();
    REQUIRE(seen);
    CHECK(seen->server_name.empty());
}

TEST_CASE(
    "upstream TLS session: a certificate the route cannot trust fails the handshake, naming why",
    "[tls_termination]") {
    const TestCertificates& pki = shared_pki();
    const auto [label, certificate, verify_ca, host, reason] =
        GENERATE_REF(table<std::string, Certificate, std::string, std::string, std::string>({
            // ca_file unset: the system store, which does not know the test CA.
            {"another CA",
             {pki.a_chain.string(), pki.a_key.string()},
             "",
             "a.test",
             "certificate: unable to get local issuer certificate"},
            {"the wrong name",
             {pki.a_chain.string(), pki.a_key.string()},
             pki.ca.string(),
             "c.test",
             "certificate: hostname mismatch"},
            // An IP literal Host is checked against the certificate's IP entries (a has none).
            {"an address the certificate lacks",
             {pki.a_chain.string(), pki.a_key.string()},
             pki.ca.string(),
             "127.0.0.1",
             "certificate: IP address mismatch"},
            {"an expired certificate",
             {pki.expired_chain.string(), pki.expired_key.string()},
             pki.ca.string(),
             "old.test",
             "certificate: certificate has expired"},
        }));
    CAPTURE(label);
    OpensslServerOptions options;
    options.certificate = certificate;
    const OpensslServer server(options);

    const TlsClientReport report = connect_as(*upstream_context(true, verify_ca), server.port(),
                                              host, "GET / HTTP/1.0\r\n\r\n");
    CHECK_FALSE(report.handshake_done);
    CHECK(report.error == reason);
    CHECK(report.received.empty());
}

TEST_CASE(
    "upstream TLS session: a self-signed backend is refused when verifying, served with verify off",
    "[tls_termination]") {
    const TestCertificates& pki = shared_pki();
    OpensslServerOptions options;
    options.common_name = "a.test";  // the right name, no issuer the route knows
    const OpensslServer server(options);

    const TlsClientReport refused =
        connect_as(*upstream_context(true, pki.ca.string()), server.port(), "a.test");
    CHECK_FALSE(refused.handshake_done);
    CHECK(refused.error == "certificate: self-signed certificate");

    // verify: false, the Snikket page's localhost case: the request goes through encrypted.
    const TlsClientReport served =
        connect_as(*upstream_context(false, ""), server.port(), "a.test", "GET / HTTP/1.0\r\n\r\n");
    INFO(served.error);
    CHECK(served.handshake_done);
    CHECK(served.received.rfind("HTTP/1.0 200 ok\r\n", 0) == 0);
    CHECK(served.received.find("s_server") != std::string::npos);
}

TEST_CASE("upstream TLS session: verifying with no Host to check is refused before any byte",
          "[tls_termination]") {
    // Without a name OpenSSL would check the chain alone: any certificate of the CA would do.
    auto refused =
        tls::Session::create_client(*upstream_context(true, shared_pki().ca.string()), "");
    REQUIRE_FALSE(refused);
    CHECK(refused.error().message == "no host name to check the backend's certificate against");
    // verify: false has nothing to check: no SNI, and any certificate.
    auto unverified = tls::Session::create_client(*upstream_context(false, ""), "");
    CHECK(unverified);
}

TEST_CASE("upstream TLS session: a server below TLS 1.2 is refused", "[tls_termination]") {
    // s_server limited to TLS 1.1 (at security level 0, where OpenSSL 3 still has it).
    const TempDir dir("splicer-tls11");
    const Certificate certificate = make_self_signed_certificate(dir, "a.test");
    OpensslServerOptions options;
    options.certificate = certificate;
    options.extra_args = {"-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"};
    const OpensslServer server(options);
    const TlsClientReport report =
        connect_as(*upstream_context(false, ""), server.port(), "a.test");
    CHECK_FALSE(report.handshake_done);
    CHECK(report.error == "tlsv1 alert protocol version");
}

TEST_CASE("upstream TLS session: the next connection for a name resumes the backend's session",
          "[tls_termination]") {
    const TestCertificates& pki = shared_pki();
    auto server_context =
        tls::ServerContext::create({.certificates = {{pki.a_chain, pki.a_key, {}}}});
    REQUIRE(server_context);
    TlsSessionServer server(**server_context, TlsServerBehaviour::greet_and_close);
    const auto verifying = upstream_context(true, pki.ca.string());

    // The first connection is a full handshake; the ticket it brought is kept for a.test.
    const TlsClientReport first = connect_as(*verifying, server.port(), "a.test");
    INFO(first.error);
    REQUIRE(first.peer_close_notify);
    CHECK(verifying->cached_sessions() == 1);
    const TlsClientReport second = connect_as(*verifying, server.port(), "a.test");
    CHECK(second.received == "hello a.test\n");
    CHECK(second.resumed);
    const auto full = server.next_report();
    const auto resumed = server.next_report();
    REQUIRE(full);
    REQUIRE(resumed);
    CHECK_FALSE(full->resumed);
    CHECK(resumed->resumed);

    // s_server -www says so in its status page too.
    OpensslServerOptions options;
    options.certificate = {pki.a_chain.string(), pki.a_key.string()};
    const OpensslServer s_server(options);
    const std::string get = "GET / HTTP/1.0\r\n\r\n";
    const auto s_server_verifying = upstream_context(true, pki.ca.string());
    const TlsClientReport new_one = connect_as(*s_server_verifying, s_server.port(), "a.test", get);
    INFO(new_one.received);
    CHECK(new_one.received.find("\nNew, TLSv1.3") != std::string::npos);
    const TlsClientReport reused = connect_as(*s_server_verifying, s_server.port(), "a.test", get);
    INFO(reused.received);
    CHECK(reused.resumed);
    CHECK(reused.received.find("\nReused, TLSv1.3") != std::string::npos);

    // Without SNI (an IP literal) nothing is kept: a session is bound to a checked name.
    const auto unverified = upstream_context(false, "");
    for (int round = 0; round < 2; ++round) {
        CHECK(connect_as(*unverified, server.port(), "127.0.0.1").peer_close_notify);
        const auto report = server.next_report();
        REQUIRE(report);
        CHECK_FALSE(report->resumed);
    }
    CHECK(unverified->cached_sessions() == 0);
}

}  // namespace splicer::test
