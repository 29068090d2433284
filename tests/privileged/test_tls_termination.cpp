// TLS termination end to end (issue 14, "What it must show"), real clients against the real
// daemon: curl and openssl s_client through a `terminate: true` rule.
// - Snikket's nginx :443 block as splicer config, read from dist/examples/snikket-nginx-443.conf
//   with only ports, paths and the backend's scheme replaced: Host kept, X-Forwarded-For the
//   client, X-Forwarded-Proto https, the 20M body limit (413 over, byte-exact under), ACME on
//   port 80 in the same daemon, and other names on the same listener still spliced.
// - Several certificates chosen by SNI, the first the default.
// - Resumption by session ticket on TLS 1.3 and 1.2.
// - Versions (TLS 1.2 and 1.3 only) and ALPN (http/1.1 only).
// - A renewed root-only certificate read on SIGHUP by the dropped daemon: new connections get
//   it, a keep-alive connection opened before keeps working.

#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "support/backends.h"
#include "support/daemon_reload.h"
#include "support/file_modes.h"
#include "support/streams.h"
#include "support/tls_test_client.h"
#include "tls_termination_common.h"

using namespace splicer::test;

namespace {

namespace fs = std::filesystem;

// Replaces the one occurrence of `from` in `text`; a dist file that no longer has it fails the
// test (the test must keep meaning that file).
void replace_once(std::string& text, const std::string& from, const std::string& to) {
    const std::size_t at = text.find(from);
    INFO("dist/examples/snikket-nginx-443.conf no longer has: " << from);
    REQUIRE(at != std::string::npos);
    REQUIRE(text.find(from, at + 1) == std::string::npos);
    text.replace(at, from.size(), to);
}

struct NginxBlockSite {
    TestCertificates pki;
    IssuedCertificate snikket = pki.issue("snikket", kSnikketNames);
    HttpBackend https_backend{"snikket-https"};              // Snikket's :5443 in the page
    HttpBackend http_backend{"snikket-http"};                // Snikket's :5080 (port 80, ACME)
    OpensslServer spliced{{.common_name = "spliced.test"}};  // other names: spliced as before
    std::uint16_t listen = free_port();
    std::uint16_t http_listen = free_port();
};

// The shipped file on test ports and paths. The https route's backend is plain HTTP here
// ("http://", no `verify`): TLS to the backend is the upstream side's own test; what this
// block adds over it on the client side (termination, headers, limits) is the same.
std::string nginx_block_config(const NginxBlockSite& site) {
    std::string text = read_file(SPLICER_SOURCE_DIR "/dist/examples/snikket-nginx-443.conf");
    REQUIRE(!text.empty());
    replace_once(text, "{ host: \"0.0.0.0\"; port: \"443\"; }",
                 "{ host: \"127.0.0.1\"; port: \"" + std::to_string(site.listen) + "\"; }");
    replace_once(text, "{ host: \"0.0.0.0\"; port: \"80\"; }",
                 "{ host: \"127.0.0.1\"; port: \"" + std::to_string(site.http_listen) + "\"; }");
    replace_once(text, "port: \"5443\";", "port: \"" + std::to_string(site.spliced.port()) + "\";");
    replace_once(text, "\"/path/to/certificate.pem\"", "\"" + site.snikket.chain.string() + "\"");
    replace_once(text, "\"/path/to/key.pem\"", "\"" + site.snikket.key.string() + "\"");
    replace_once(text, "backend: \"https://127.0.0.1:5443\"; verify: false;",
                 "backend: \"http://" + site.https_backend.address() + "\";");
    replace_once(text, "\"http://127.0.0.1:5080\"",
                 "\"http://" + site.http_backend.address() + "\"");
    return text;
}

// curl over TLS to NAME:PORT resolved to 127.0.0.1, verifying against the test CA, from
// 127.0.0.2 (so X-Forwarded-For cannot be mistaken for splicer's own 127.0.0.1).
CommandResult curl_https(const NginxBlockSite& site, const std::string& name,
                         const std::string& path, const std::string& arguments = "") {
    const std::string port = std::to_string(site.listen);
    return run_command("curl -sS --max-time 60 --http1.1 --interface 127.0.0.2 --cacert " +
                       site.pki.ca.string() + " --resolve " + name + ":" + port + ":127.0.0.1 " +
                       arguments + " 'https://" + name + ":" + port + path + "'");
}

}  // namespace

TEST_CASE("tls termination: the nginx :443 block as splicer config, curl for the Snikket names",
          "[daemon][tls_termination]") {
    require_root();
    NginxBlockSite site;
    auto daemon = start_daemon("sockmap", nginx_block_config(site));
    INFO(daemon->log_tail());

    std::size_t seen = 0;
    for (const std::string& name : kSnikketNames) {
        const CommandResult got =
            curl_https(site, name, "/path/" + name + "?q=1", "-w ' %{http_code}'");
        CAPTURE(name, got.output);
        CHECK(got.exit_code == 0);  // the certificate verified against the CA, for this name
        CHECK(got.output == "snikket-https GET /path/" + name + "?q=1 200");
        REQUIRE(site.https_backend.wait_for_requests(++seen, 10s));
        const RecordedRequest request = site.https_backend.requests().back();
        CHECK(request.target == "/path/" + name + "?q=1");
        CHECK(request.head.header("host") == name + ":" + std::to_string(site.listen));
        CHECK(request.head.header("x-forwarded-for") == "127.0.0.2");
        CHECK(request.head.header("x-forwarded-proto") == "https");
    }

    // client_max_body_size 20MB: just under it arrives byte-exact, over it is 413.
    TempDir files("splicer-tls-upload");
    ByteGenerator generator(14);
    const std::string under = generator.take(20'000'000);
    const auto under_path = files.write_file("under", under);
    const CommandResult uploaded =
        curl_https(site, "share.chat.example.com", "/upload",
                   "-w ' %{http_code}' --data-binary @" + under_path.string());
    CAPTURE(uploaded.output);
    CHECK(uploaded.output == "snikket-https POST /upload 200");
    REQUIRE(site.https_backend.wait_for_requests(++seen, 20s));
    CHECK(site.https_backend.requests().back().body_bytes == under.size());
    CHECK(site.https_backend.requests().back().body_sha256 == sha256_hex(under));

    const auto over_path = files.write_file("over", under + generator.take(1'000'000));
    const CommandResult refused =
        curl_https(site, "share.chat.example.com", "/too-big",
                   "-o /dev/null -w '%{http_code}' --data-binary @" + over_path.string());
    CHECK(refused.output == "413");

    // ACME http-01 on port 80 in the same daemon: still proxied to Snikket's plain port.
    const CommandResult acme =
        run_command("curl -sS --max-time 10 -H 'Host: chat.example.com' 'http://127.0.0.1:" +
                    std::to_string(site.http_listen) + "/.well-known/acme-challenge/token-1'");
    CHECK(acme.output == "snikket-http GET /.well-known/acme-challenge/token-1");
    REQUIRE(site.http_backend.wait_for_requests(1, 5s));
    CHECK(site.http_backend.requests().at(0).head.header("x-forwarded-proto") == "http");

    // Another name on the same listener: spliced to the backend, which does the handshake
    // itself (its own certificate, its own status page).
    const SClientResult other =
        run_s_client({.port = site.listen, .servername = "other.example.org"});
    CAPTURE(other.output);
    CHECK(other.handshake_done);
    CHECK(other.subject_cn == "spliced.test");
    CHECK(other.output.find("Ciphers supported in s_server binary") != std::string::npos);
    const auto routed = daemon->wait_for_log(
        "routed", [&](const LogLine& line) { return line.get("sni") == "other.example.org"; });
    REQUIRE(routed.has_value());
    CHECK(routed->get("backend") == site.spliced.address());
    CHECK(routed->get("plane") == "sockmap");

    // The over-limit body never reached the backend; the daemon still serves.
    CHECK(site.https_backend.requests().size() == seen);
    const CommandResult after = curl_https(site, "chat.example.com", "/after");
    CHECK(after.output == "snikket-https GET /after");
    stop_daemon(*daemon);
}

TEST_CASE("tls termination: SNI picks among several certificates, the first is the default",
          "[daemon][tls_termination]") {
    require_root();
    TerminatingSite site;
    auto daemon = start_daemon(
        "copy",
        terminating_config(site, {.more_certificates = {{site.pki.a_chain, site.pki.a_key},
                                                        {site.pki.b_chain, site.pki.b_key}}}));
    INFO(daemon->log_tail());
    struct Case {
        std::string servername;
        std::string subject;
        std::string names;
    };
    const std::vector<Case> cases = {
        {"a.test", "a.test", "DNS:a.test"},
        {"b.test", "b.test", "DNS:b.test, DNS:*.wild.test"},
        {"x.wild.test", "b.test", "DNS:b.test, DNS:*.wild.test"},
        {"A.Test", "a.test", "DNS:a.test"},  // host names compare case-insensitively
        {"groups.chat.example.com", "chat.example.com",
         "DNS:chat.example.com, DNS:groups.chat.example.com, DNS:share.chat.example.com"},
        {"", "chat.example.com",  // no SNI: the default
         "DNS:chat.example.com, DNS:groups.chat.example.com, DNS:share.chat.example.com"},
        {"unknown.example.org", "chat.example.com",  // no match: the default
         "DNS:chat.example.com, DNS:groups.chat.example.com, DNS:share.chat.example.com"},
    };
    for (const Case& each : cases) {
        const SClientResult result = s_client_request(site, each.servername, "/sni");
        CAPTURE(each.servername, result.output);
        CHECK(result.handshake_done);
        CHECK(result.subject_cn == each.subject);
        CHECK(subject_alt_names(result.peer_certificate_pem) == each.names);
        // Terminated: the answer is the backend's, through splicer's proxy.
        CHECK(result.output.find("web GET /sni") != std::string::npos);
    }
    stop_daemon(*daemon);
}

TEST_CASE("tls termination: a session ticket resumes on TLS 1.3 and on TLS 1.2",
          "[daemon][tls_termination]") {
    require_root();
    TerminatingSite site;
    auto daemon = start_daemon("copy", terminating_config(site));
    INFO(daemon->log_tail());
    const TempDir dir("splicer-tls-sessions");
    for (const std::string version : {"-tls1_3", "-tls1_2"}) {
        const std::string session = (dir.path() / (version + ".session")).string();
        const SClientResult first =
            s_client_request(site, "chat.example.com", "/first", {version, "-sess_out", session});
        CAPTURE(version, first.output);
        CHECK(first.session == "New");
        REQUIRE(fs::exists(session));
        const SClientResult second =
            s_client_request(site, "chat.example.com", "/second", {version, "-sess_in", session});
        CAPTURE(second.output);
        CHECK(second.session == "Reused");
        CHECK(second.protocol == (version == "-tls1_3" ? "TLSv1.3" : "TLSv1.2"));
        CHECK(second.output.find("web GET /second") != std::string::npos);
    }
    stop_daemon(*daemon);
}

TEST_CASE("tls termination: TLS 1.2 and 1.3 only, ALPN http/1.1 only",
          "[daemon][tls_termination]") {
    require_root();
    TerminatingSite site;
    auto daemon = start_daemon("copy", terminating_config(site));
    INFO(daemon->log_tail());

    // TLS 1.1 needs security level 0 in this OpenSSL; the same client against an s_server
    // that allows it shows the refusal below is the daemon's, not the client's.
    const std::vector<std::string> tls11 = {"-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"};
    OpensslServer old_server({.common_name = "old.test", .extra_args = tls11});
    const SClientResult control =
        run_s_client({.port = old_server.port(), .servername = "old.test", .extra_args = tls11});
    CAPTURE(control.output);
    REQUIRE(control.handshake_done);
    REQUIRE(control.protocol == "TLSv1.1");
    const SClientResult refused = s_client_request(site, "chat.example.com", "/tls11", tls11);
    CAPTURE(refused.output);
    CHECK_FALSE(refused.handshake_done);
    CHECK(refused.output.find("web GET") == std::string::npos);

    for (const std::string version : {"-tls1_2", "-tls1_3"}) {
        const SClientResult accepted = s_client_request(site, "chat.example.com", "/v", {version});
        CAPTURE(version, accepted.output);
        CHECK(accepted.handshake_done);
        CHECK(accepted.protocol == (version == "-tls1_2" ? "TLSv1.2" : "TLSv1.3"));
        CHECK(accepted.output.find("web GET /v") != std::string::npos);
    }

    const SClientResult h2_only = s_client_request(site, "chat.example.com", "/h2", {}, {"h2"});
    CAPTURE(h2_only.output);
    CHECK_FALSE(h2_only.handshake_done);
    CHECK(h2_only.output.find("no application protocol") != std::string::npos);
    for (const auto& offered :
         std::vector<std::vector<std::string>>{{"http/1.1"}, {"h2", "http/1.1"}}) {
        const SClientResult result =
            s_client_request(site, "chat.example.com", "/alpn", {}, offered);
        CAPTURE(result.output);
        CHECK(result.handshake_done);
        CHECK(result.alpn == "http/1.1");
        CHECK(result.output.find("web GET /alpn") != std::string::npos);
    }
    stop_daemon(*daemon);
}

TEST_CASE(
    "tls termination: a renewed root-only certificate is served after SIGHUP, "
    "an established connection keeps working",
    "[daemon][tls_termination][reload]") {
    require_root();
    TerminatingSite site;
    // As Let's Encrypt's live/: a 0700 directory of 0600 files, root's. The daemon reads
    // them at start as root, and after the drop only through its privileged helper.
    const TempDir live("splicer-live");
    const fs::path chain = live.path() / "fullchain.pem";
    const fs::path key = live.path() / "privkey.pem";
    fs::copy_file(site.snikket.chain, chain);
    fs::copy_file(site.snikket.key, key);
    make_root_only(live.path());
    std::string config = terminating_config(site, {.idle_timeout = 60});
    for (const auto& [from, to] : {std::pair{site.snikket.chain, chain}, {site.snikket.key, key}}) {
        const std::size_t at = config.find(from.string());
        REQUIRE(at != std::string::npos);
        config.replace(at, from.string().size(), to.string());
    }
    auto daemon = start_daemon("copy", config);
    INFO(daemon->log_tail());
    // The worker runs unprivileged: it could not read live/ itself.
    const std::string status = read_file("/proc/" + std::to_string(daemon->pid()) + "/status");
    const std::size_t uid = status.find("\nUid:\t");
    REQUIRE(uid != std::string::npos);
    CHECK(status.compare(uid + 6, 2, "0\t") != 0);

    const std::string old_serial = certificate_serial(chain);
    TlsTestClient established({.port = site.listen, .servername = "chat.example.com"});
    CHECK(established.peer_serial() == old_serial);
    const HttpResponse before =
        established.exchange("GET /before HTTP/1.1\r\nHost: chat.example.com\r\n\r\n");
    CHECK(before.status == 200);
    CHECK(before.body == "web GET /before");

    // Renewed in place, as certbot's deploy does: same names, same paths, a new serial.
    const IssuedCertificate renewed = site.pki.issue("renewed", kSnikketNames);
    const std::string new_serial = certificate_serial(renewed.chain);
    REQUIRE(new_serial != old_serial);
    REQUIRE(!new_serial.empty());
    std::ofstream(chain, std::ios::trunc) << read_file(renewed.chain);
    std::ofstream(key, std::ios::trunc) << read_file(renewed.key);
    struct stat file {};
    REQUIRE(::stat(key.c_str(), &file) == 0);
    REQUIRE((file.st_mode & 0777) == 0600);
    REQUIRE(file.st_uid == 0);
    const auto outcome = reload_daemon(*daemon);
    REQUIRE(outcome.has_value());
    CHECK(outcome->event() == "reloaded");

    TlsTestClient fresh({.port = site.listen, .servername = "chat.example.com"});
    CHECK(fresh.peer_serial() == new_serial);
    const HttpResponse fresh_answer =
        fresh.exchange("GET /fresh HTTP/1.1\r\nHost: chat.example.com\r\n\r\n");
    CHECK(fresh_answer.body == "web GET /fresh");

    // The connection from before the reload: its second request is served.
    const HttpResponse after =
        established.exchange("GET /after HTTP/1.1\r\nHost: chat.example.com\r\n\r\n");
    CHECK(after.complete);
    CHECK(after.status == 200);
    CHECK(after.body == "web GET /after");
    stop_daemon(*daemon);
}
