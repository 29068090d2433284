// Terminated requests to https:// backends through the real daemon: a `terminate: true` rule,
// https routes whose backends are Debian's nginx serving HTTPS (no PROXY header), curl over
// TLS as the client. The backend's certificate is verified by default against the route's
// ca_file (or the system store) and must name the request's Host, which also goes out as SNI
// without its port (nginx's proxy_ssl_server_name on); `verify: false` reaches a self-signed
// backend. A certificate the route cannot verify is answered 502, the access line naming the
// verifier's reason, and counted as a backend failure only (not also as routed).

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>

#include "http_test_common.h"
#include "support/listening_child.h"
#include "support/nginx_server.h"
#include "support/streams.h"
#include "support/test_certificates.h"

using namespace splicer::test;
namespace fs = std::filesystem;

namespace {

struct UpstreamSite {
    TestCertificates pki;
    // a.test's certificate from the test CA; and a self-signed one for backend.test.
    NginxServer verified{a_test_https_backend(pki), accepts_on_loopback};
    NginxServer self_signed{{.address = "127.0.0.1",
                             .https_port = free_port(),
                             .http_port = free_port(),
                             .server_name = "backend.test",
                             .https_proxy_protocol = false},
                            accepts_on_loopback};
    std::uint16_t tls_listen = free_port();
};

std::string https_backend(const NginxServer& nginx) {
    return "https://127.0.0.1:" + std::to_string(nginx.options().https_port);
}

// Every name below is terminated with a.test's certificate (the only entry: the default);
// curl is told -k for the names it does not carry: the backend side is what is tested.
std::string upstream_config(const UpstreamSite& site) {
    const std::string ca = site.pki.ca.string();
    std::ostringstream text;
    text << "listen: ( { host: \"127.0.0.1\"; port: \"" << site.tls_listen << "\"; } );\n"
         << "protocols: ( { name: \"tls\"; terminate: true; } );\n"
         << "connect_timeout: 2;\n"
         << "https: {\n"
         << "  certificates: ( { certificate: \"" << site.pki.a_chain.string() << "\"; key: \""
         << site.pki.a_key.string() << "\"; } );\n"
         << "  header_timeout: 5;\n  idle_timeout: 10;\n  backend_timeout: 10;\n"
         << "  routes: (\n"
         // The system store does not know the test CA.
         << "    { hosts: [ \"a.test\" ]; path_prefix: \"/untrusted/\"; backend: \""
         << https_backend(site.verified) << "\"; },\n"
         << "    { hosts: [ \"a.test\" ]; backend: \"" << https_backend(site.verified)
         << "\"; ca_file: \"" << ca
         << "\"; },\n"
         // The backend answers with a.test's certificate: not this name.
         << "    { hosts: [ \"wrong.a.test\" ]; backend: \"" << https_backend(site.verified)
         << "\"; ca_file: \"" << ca << "\"; },\n"
         << "    { hosts: [ \"self.a.test\" ]; backend: \"" << https_backend(site.self_signed)
         << "\"; verify: false; },\n"
         << "    { hosts: [ \"self-verified.a.test\" ]; backend: \""
         << https_backend(site.self_signed) << "\"; ca_file: \"" << ca << "\"; }\n"
         << "  );\n"
         << "};\n";
    return text.str();
}

// curl over TLS to the daemon as `host`, -k: the daemon's certificate names a.test only.
CommandResult curl_via(const UpstreamSite& site, const std::string& host, const std::string& path,
                       const std::string& arguments) {
    const std::string port = std::to_string(site.tls_listen);
    return run_command("curl -sS -k --max-time 30 --resolve " + host + ":" + port + ":127.0.0.1 " +
                       arguments + " 'https://" + host + ":" + port + path + "'");
}

// nginx writes a request's log line as it finishes it, maybe just after curl has the response.
bool logged(const std::function<std::string()>& log, const std::string& needle) {
    for (int tries = 0; tries < 40; ++tries) {
        if (log().find(needle) != std::string::npos) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
}

std::string file_sha256(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return sha256_hex(bytes);
}

}  // namespace

TEST_CASE(
    "tls upstream: a verified https backend answers 200 byte-exact, SNI the Host without port",
    "[tls][tls_upstream]") {
    require_root();
    UpstreamSite site;
    auto daemon = start_daemon("copy", upstream_config(site));
    const fs::path downloaded = site.pki.dir.path() / "blob.out";
    // Two requests, each on a backend TLS connection of its own (the second offered the
    // session the first one brought).
    const CommandResult result =
        curl_via(site, "a.test", "/blob", "-o " + downloaded.string() + " -w '%{http_code} '");
    const CommandResult again = curl_via(site, "a.test", "/blob", "-o /dev/null -w '%{http_code}'");
    INFO(result.output << again.output << daemon->log_tail() << site.verified.error_log());
    CHECK(result.output == "200 ");
    CHECK(again.output == "200");
    CHECK(fs::file_size(downloaded) == site.verified.options().blob_bytes);
    CHECK(file_sha256(downloaded) == file_sha256(site.verified.blob_path()));

    const auto line = access_line(*daemon, "/blob", 200);
    REQUIRE(line.has_value());
    CHECK(line->get("backend") ==
          "127.0.0.1:" + std::to_string(site.verified.options().https_port));
    CHECK(line->get("error").empty());
    // The backend saw a.test as SNI: the Host (curl sent "a.test:PORT") without its port.
    CHECK(logged([&] { return site.verified.https_log(); },
                 "sni=a.test \"GET /blob HTTP/1.1\" 200 " +
                     std::to_string(site.verified.options().blob_bytes)));
    CHECK(daemon_counter(*daemon, "backend_failures") == 0);
    stop_daemon(*daemon);
}

TEST_CASE("tls upstream: a backend certificate the route cannot verify is answered 502 naming why",
          "[tls][tls_upstream]") {
    require_root();
    UpstreamSite site;
    auto daemon = start_daemon("copy", upstream_config(site));
    const auto [label, host, path, reason] =
        GENERATE(table<std::string, std::string, std::string, std::string>({
            // nginx sends the whole chain, the test CA's root included.
            {"an issuer the system store lacks", "a.test", "/untrusted/blob",
             "backend certificate: self-signed certificate in certificate chain"},
            {"a certificate for another name", "wrong.a.test", "/wrong-name",
             "backend certificate: hostname mismatch"},
            {"a self-signed backend while verifying", "self-verified.a.test", "/self-verified",
             "backend certificate: self-signed certificate"},
        }));
    CAPTURE(label);
    const CommandResult result = curl_via(site, host, path, "-o /dev/null -w '%{http_code}'");
    INFO(result.output << daemon->log_tail());
    CHECK(result.output == "502");
    const auto line = access_line(*daemon, path, 502);
    REQUIRE(line.has_value());
    CHECK(line->get("error") == reason);
    // Nothing reached the backend's HTTP layer.
    CHECK(site.verified.https_log().find(path) == std::string::npos);
    CHECK(site.self_signed.https_log().find(path) == std::string::npos);
    // Counted once a second by the daemon: wait for it. Counted once, as a refused connect
    // is: a backend failure, not also routed (the TCP connect to it succeeded).
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    CHECK(daemon_counter(*daemon, "backend_failures") == 1);
    CHECK(daemon_counter(*daemon, "routed") == 0);

    // The daemon serves on: the verified route still answers on a new connection, routed
    // once its handshake is done.
    const CommandResult after = curl_via(site, "a.test", "/blob", "-o /dev/null -w '%{http_code}'");
    CHECK(after.output == "200");
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    CHECK(daemon_counter(*daemon, "routed") == 1);
    CHECK(daemon_counter(*daemon, "backend_failures") == 1);
    stop_daemon(*daemon);
}

TEST_CASE("tls upstream: verify false reaches a self-signed backend, encrypted",
          "[tls][tls_upstream]") {
    require_root();
    UpstreamSite site;
    auto daemon = start_daemon("copy", upstream_config(site));
    const fs::path downloaded = site.pki.dir.path() / "self.out";
    const CommandResult result =
        curl_via(site, "self.a.test", "/blob", "-o " + downloaded.string() + " -w '%{http_code}'");
    INFO(result.output << daemon->log_tail() << site.self_signed.error_log());
    CHECK(result.output == "200");
    CHECK(file_sha256(downloaded) == file_sha256(site.self_signed.blob_path()));
    // It went over TLS to the HTTPS port, SNI the Host.
    CHECK(logged([&] { return site.self_signed.https_log(); },
                 "sni=self.a.test \"GET /blob HTTP/1.1\" 200"));
    stop_daemon(*daemon);
}

TEST_CASE("tls upstream: a route's PROXY header goes in the clear before the TLS handshake",
          "[tls][tls_upstream]") {
    require_root();
    const TestCertificates pki;
    // nginx's `listen ... ssl proxy_protocol`: the header first, then TLS, as HAProxy sends.
    NginxOptions reading_proxy_header = a_test_https_backend(pki);
    reading_proxy_header.https_proxy_protocol = true;
    const NginxServer nginx(reading_proxy_header, accepts_on_loopback);
    const std::uint16_t tls_listen = free_port();
    auto daemon =
        start_daemon("copy", a_test_https_route_config(tls_listen, pki, https_backend(nginx), "",
                                                       "", "proxyprotocol: 1; "));
    const std::string port = std::to_string(tls_listen);
    const CommandResult result = run_command(
        "curl -sS --max-time 30 --cacert " + pki.ca.string() + " --resolve a.test:" + port +
        ":127.0.0.1 --local-port 40000-40999 -o /dev/null -w '%{http_code} %{local_port}' "
        "'https://a.test:" +
        port + "/blob'");
    INFO(result.output << daemon->log_tail() << nginx.error_log());
    REQUIRE(result.output.rfind("200 ", 0) == 0);
    // nginx read the header (the client's address and port) and then the handshake: SNI a.test.
    const std::string client_port = result.output.substr(4);
    CHECK(logged([&] { return nginx.https_log(); },
                 "pp=127.0.0.1:" + client_port + " remote=127.0.0.1 sni=a.test \"GET /blob"));
    stop_daemon(*daemon);
}
