// tls::ServerContext and tls::Session answering a real `openssl s_client` over loopback TCP
// (tests/support/tls_session_server.h drives the session with poll()): certificate choice by
// SNI, protocol versions, ciphers, ALPN, ticket resumption across key rotations, OCSP
// stapling. Certificates come from a throw-away CA made per test (support/test_certificates).

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <string>

#include "support/command.h"
#include "support/test_certificates.h"
#include "support/tls_session_server.h"
#include "tls/server_context.h"

namespace splicer::test {
namespace {

using namespace std::chrono_literals;

// s_client against the server: stdin empty, -ign_eof so it reads until the server's
// close_notify (and so sees the TLS 1.3 tickets sent after the handshake); bounded by timeout(1).
CommandResult s_client(std::uint16_t port, const std::string& arguments) {
    return run_command("timeout 10 openssl s_client -connect 127.0.0.1:" + std::to_string(port) +
                       " -ign_eof " + arguments + " < /dev/null");
}

bool has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

std::unique_ptr<tls::ServerContext> make_server_context(const TestCertificates& pki,
                                                        tls::ServerSettings settings = {}) {
    if (settings.certificates.empty()) {
        settings.certificates = {{pki.a_chain, pki.a_key, {}}, {pki.b_chain, pki.b_key, {}}};
    }
    auto context = tls::ServerContext::create(settings);
    if (!context) {
        FAIL("ServerContext::create: " << context.error().message);
    }
    return std::move(*context);
}

}  // namespace

TEST_CASE("TLS server: SNI picks the certificate whose SAN names the host, else the first",
          "[tls_termination]") {
    const TestCertificates& pki = shared_pki();
    const auto context = make_server_context(pki);
    TlsSessionServer server(*context, TlsServerBehaviour::greet_and_close);
    const auto [servername, subject, greeting] =
        GENERATE(table<std::string, std::string, std::string>({
            {"-servername a.test", "a.test", "hello a.test"},
            {"-servername b.test", "b.test", "hello b.test"},
            {"-servername A.Test", "a.test", "hello A.Test"},            // DNS names ignore case
            {"-servername x.wild.test", "b.test", "hello x.wild.test"},  // *.wild.test
            {"-servername y.x.wild.test", "a.test", "hello y.x.wild.test"},  // one label only
            {"-servername wild.test", "a.test", "hello wild.test"},  // the wildcard needs a label
            {"-servername unknown.test", "a.test", "hello unknown.test"},  // default: the first
            {"-noservername", "a.test", "hello -"},
        }));
    CAPTURE(servername);
    const CommandResult client = s_client(server.port(), servername);
    INFO(client.output);
    CHECK(client.exit_code == 0);
    CHECK(has(client.output, "subject=CN = " + subject + "\n"));
    CHECK(has(client.output, greeting + "\n"));
    const auto report = server.next_report();
    REQUIRE(report);
    CHECK(report->handshake_done);
    CHECK(report->error.empty());
    CHECK(report->peer_close_notify);
}

TEST_CASE("TLS server: a single certificate answers every name, its own or not",
          "[tls_termination]") {
    // One certificate is chosen without matching the name against it (no X509_check_host
    // per handshake): a name it does not carry gets it too, as the first of several would.
    const TestCertificates& pki = shared_pki();
    tls::ServerSettings settings;
    settings.certificates = {{pki.b_chain, pki.b_key, {}}};
    const auto context = make_server_context(pki, settings);
    TlsSessionServer server(*context, TlsServerBehaviour::greet_and_close);
    const auto [servername, greeting] = GENERATE(table<std::string, std::string>({
        {"-servername b.test", "hello b.test"},
        {"-servername x.wild.test", "hello x.wild.test"},
        {"-servername a.test", "hello a.test"},
        {"-noservername", "hello -"},
    }));
    CAPTURE(servername);
    const CommandResult client = s_client(server.port(), servername);
    INFO(client.output);
    CHECK(client.exit_code == 0);
    CHECK(has(client.output, "subject=CN = b.test\n"));
    CHECK(has(client.output, greeting + "\n"));
    const auto report = server.next_report();
    REQUIRE(report);
    CHECK(report->handshake_done);
    CHECK(report->error.empty());
}

TEST_CASE("TLS server: TLS 1.0 and 1.1 are refused, 1.2 and 1.3 complete", "[tls_termination]") {
    const TestCertificates& pki = shared_pki();
    const auto context = make_server_context(pki);
    TlsSessionServer server(*context, TlsServerBehaviour::greet_and_close);
    // @SECLEVEL=0 on the client: OpenSSL 3 clients refuse TLS 1.0/1.1 themselves otherwise,
    // and the refusal must come from the server.
    const auto [arguments, works, version] = GENERATE(table<std::string, bool, std::string>({
        {"-tls1 -cipher DEFAULT:@SECLEVEL=0", false, ""},
        {"-tls1_1 -cipher DEFAULT:@SECLEVEL=0", false, ""},
        {"-tls1_2", true, "TLSv1.2"},
        {"-tls1_3", true, "TLSv1.3"},
    }));
    CAPTURE(arguments);
    const CommandResult client = s_client(server.port(), "-servername a.test " + arguments);
    INFO(client.output);
    const auto report = server.next_report();
    REQUIRE(report);
    if (works) {
        CHECK(client.exit_code == 0);
        CHECK(has(client.output, "hello a.test\n"));
        CHECK(report->version == version);
        CHECK(report->error.empty());
    } else {
        CHECK(client.exit_code != 0);
        CHECK(has(client.output, "alert protocol version"));
        CHECK_FALSE(report->handshake_done);
        CHECK(report->error == "unsupported protocol");
    }
}

TEST_CASE("TLS server: TLS 1.2 ciphers outside Mozilla intermediate are refused",
          "[tls_termination]") {
    const TestCertificates& pki = shared_pki();
    const auto context = make_server_context(pki);
    TlsSessionServer server(*context, TlsServerBehaviour::greet_and_close);
    const auto [cipher, works] = GENERATE(table<std::string, bool>({
        {"ECDHE-ECDSA-AES128-GCM-SHA256", true},
        {"ECDHE-ECDSA-CHACHA20-POLY1305", true},
        {"ECDHE-ECDSA-AES128-SHA", false},            // CBC with SHA-1: OpenSSL's default allows it
        {"ECDHE-ECDSA-AES256-SHA384", false},         // CBC
        {"ECDHE-ECDSA-AES128-SHA256", false},         // CBC
        {"ECDHE-ECDSA-NULL-SHA:@SECLEVEL=0", false},  // no encryption at all
    }));
    // (3DES cannot be tried: this libssl no longer offers DES-CBC3-SHA even at SECLEVEL 0.)
    CAPTURE(cipher);
    const CommandResult client =
        s_client(server.port(), "-servername a.test -tls1_2 -cipher '" + cipher + "'");
    INFO(client.output);
    const auto report = server.next_report();
    REQUIRE(report);
    CHECK(report->handshake_done == works);
    CHECK((client.exit_code == 0) == works);
    if (!works) {
        CHECK(report->error == "no shared cipher");
    }
}

TEST_CASE("TLS server: ALPN selects http/1.1 and an offer without it gets no_application_protocol",
          "[tls_termination]") {
    const TestCertificates& pki = shared_pki();
    const auto context = make_server_context(pki);
    TlsSessionServer server(*context, TlsServerBehaviour::greet_and_close);
    const auto [arguments, works, printed] = GENERATE(table<std::string, bool, std::string>({
        {"-alpn h2,http/1.1", true, "ALPN protocol: http/1.1"},
        {"-alpn http/1.1", true, "ALPN protocol: http/1.1"},
        {"", true, "No ALPN negotiated"},
        // What nginx 1.22 answers too (RFC 7301 3.2): a fatal alert, not a silent downgrade.
        {"-alpn h2", false, "alert no application protocol"},
    }));
    CAPTURE(arguments);
    const CommandResult client = s_client(server.port(), "-servername a.test " + arguments);
    INFO(client.output);
    CHECK(has(client.output, printed));
    const auto report = server.next_report();
    REQUIRE(report);
    CHECK(report->handshake_done == works);
    CHECK((client.exit_code == 0) == works);
    if (works) {
        CHECK(report->alpn == (arguments.empty() ? "" : "http/1.1"));
    }
}

TEST_CASE("TLS server: tickets resume TLS 1.2 and 1.3 sessions until two key rotations pass",
          "[tls_termination]") {
    const TestCertificates& pki = shared_pki();
    // A clock the test steps: the rotation happens without waiting for it.
    static std::atomic<std::int64_t> seconds{0};
    seconds = 0;
    tls::ServerSettings settings;
    settings.ticket_key_rotation = 3600s;
    settings.clock = [] {
        return std::chrono::steady_clock::time_point(std::chrono::seconds(seconds.load()));
    };
    const auto context = make_server_context(pki, settings);
    TlsSessionServer server(*context, TlsServerBehaviour::greet_and_close);
    const std::string version = GENERATE(as<std::string>{}, "-tls1_2", "-tls1_3");
    CAPTURE(version);
    const std::string session_file = pki.dir.path() / ("session" + version);
    const std::string common = "-servername a.test " + version + " ";

    const CommandResult first = s_client(server.port(), common + "-sess_out " + session_file);
    INFO(first.output);
    REQUIRE(first.exit_code == 0);
    CHECK(has(first.output, "New, TLSv1."));
    REQUIRE(server.next_report());

    const auto resume = [&](bool expect_reused) {
        const CommandResult again = s_client(server.port(), common + "-sess_in " + session_file);
        INFO(again.output);
        CHECK(again.exit_code == 0);
        CHECK(has(again.output, expect_reused ? "Reused, TLSv1." : "New, TLSv1."));
        const auto report = server.next_report();
        REQUIRE(report);
        CHECK(report->resumed == expect_reused);
    };
    resume(true);
    seconds += 3600;  // one rotation: the ticket's key is the previous one, still accepted
    resume(true);
    seconds += 3600;  // two: its key is gone, so a full handshake
    resume(false);
    CHECK(context->ticket_key_generation() == 3);
}

TEST_CASE(
    "TLS server: a TLS 1.3 resumption brings a fresh ticket, so a client that uses each "
    "ticket once resumes every time",
    "[tls_termination]") {
    const TestCertificates& pki = shared_pki();
    const auto context = make_server_context(pki);
    TlsSessionServer server(*context, TlsServerBehaviour::greet_and_close);
    // Each connection offers the ticket the one before it received, as wrk and browsers use
    // TLS 1.3 tickets. s_client writes its -sess_out file only when a ticket arrives, so a
    // resumption that brought none leaves no file for the next connection to offer.
    std::string offered;
    for (int connection = 0; connection < 4; ++connection) {
        CAPTURE(connection);
        const std::string received =
            pki.dir.path() / ("ticket_chain" + std::to_string(connection));
        const std::string offer = offered.empty() ? "" : "-sess_in " + offered + " ";
        const CommandResult run = s_client(
            server.port(), "-servername a.test -tls1_3 " + offer + "-sess_out " + received);
        INFO(run.output);
        REQUIRE(run.exit_code == 0);
        CHECK(has(run.output, connection == 0 ? "New, TLSv1.3" : "Reused, TLSv1.3"));
        const auto report = server.next_report();
        REQUIRE(report);
        CHECK(report->resumed == (connection > 0));
        REQUIRE(std::filesystem::exists(received));
        offered = received;
    }
}

TEST_CASE("TLS server: a stapled OCSP response is sent to a client that asks",
          "[tls_termination]") {
    const TestCertificates& pki = shared_pki();
    tls::ServerSettings settings;
    settings.certificates = {{pki.a_chain, pki.a_key, pki.a_ocsp_response},
                             {pki.b_chain, pki.b_key, {}}};
    const auto context = make_server_context(pki, settings);
    TlsSessionServer server(*context, TlsServerBehaviour::greet_and_close);
    const std::string version = GENERATE(as<std::string>{}, "-tls1_2", "-tls1_3");
    CAPTURE(version);

    const CommandResult stapled = s_client(server.port(), "-servername a.test -status " + version);
    INFO(stapled.output);
    CHECK(stapled.exit_code == 0);
    CHECK(has(stapled.output, "OCSP Response Status: successful (0x0)"));
    CHECK(has(stapled.output, "Cert Status: good"));
    REQUIRE(server.next_report());

    const CommandResult none = s_client(server.port(), "-servername b.test -status " + version);
    INFO(none.output);
    CHECK(none.exit_code == 0);
    CHECK(has(none.output, "OCSP response: no response sent"));
    REQUIRE(server.next_report());
}

}  // namespace splicer::test

namespace splicer::test {

TEST_CASE("TLS server: a context is not made from files the checks would refuse",
          "[tls_termination]") {
    const TestCertificates& pki = shared_pki();
    const std::string missing = (pki.dir.path() / "missing.pem").string();
    const auto [label, certificate, key, message] =
        GENERATE_REF(table<std::string, std::string, std::string, std::string>({
            {"a key that does not match", pki.a_chain.string(), pki.stray_key.string(),
             "key \"" + pki.stray_key.string() + "\" does not match certificate \"" +
                 pki.a_chain.string() + "\""},
            {"a missing certificate", missing, pki.a_key.string(),
             "cannot read \"" + missing + "\": No such file or directory"},
            {"a key in place of the certificate", pki.a_key.string(), pki.a_key.string(),
             "\"" + pki.a_key.string() + "\": holds no PEM certificate"},
        }));
    CAPTURE(label);
    tls::ServerSettings settings;
    settings.certificates = {{certificate, key, {}}};
    const auto context = tls::ServerContext::create(settings);
    REQUIRE_FALSE(context);
    CHECK(context.error().message == message);
    CHECK(tls::ServerContext::create({}).error().message == "no certificate given");
}

}  // namespace splicer::test
