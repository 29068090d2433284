// TLS termination through the real daemon, the core path: a `terminate: true` rule on the
// 443-style listener, an https route to a plain HTTP backend, curl over TLS (its own CA from
// tests/support/test_certificates.h). One TLS connection carries several requests
// (keep-alive); bodies cross byte-exact both ways. The fuller end-to-end suite is
// test_tls_termination*.cpp.

#include <sys/socket.h>
#include <sys/time.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "http_test_common.h"
#include "support/client_hello.h"
#include "support/openssl_client.h"
#include "support/sockets.h"
#include "support/streams.h"
#include "support/test_certificates.h"

using namespace splicer::test;
using splicer::UniqueFd;
namespace fs = std::filesystem;

namespace {

struct SmokeSite {
    TestCertificates pki;
    HttpBackend web{"web"};
    std::uint16_t refused_port = free_port();  // nothing listens
    std::uint16_t tls_listen = free_port();
};

// A terminating rule for a.test (whose certificate is the first and default entry), the
// other names spliced to a port where nothing listens; an https route a.test -> `web`, and
// one to an https:// backend that this version answers 502.
std::string smoke_config(const SmokeSite& site) {
    std::ostringstream text;
    text << "listen: ( { host: \"127.0.0.1\"; port: \"" << site.tls_listen << "\"; } );\n"
         << "protocols: (\n"
         << "  { name: \"tls\"; sni_hostnames: [ \"a.test\", \"tls-upstream.a.test\" ]; "
            "terminate: true; },\n"
         << "  { name: \"tls\"; host: \"127.0.0.1\"; port: \"" << site.refused_port << "\"; }\n"
         << ");\n"
         << "connect_timeout: 1;\n"
         << "https: {\n"
         << "  certificates: ( { certificate: \"" << site.pki.a_chain.string() << "\"; key: \""
         << site.pki.a_key.string() << "\"; } );\n"
         << "  header_timeout: 5;\n  idle_timeout: 10;\n  backend_timeout: 10;\n"
         << "  routes: (\n"
         << "    { hosts: [ \"tls-upstream.a.test\" ]; backend: \"https://127.0.0.1:"
         << site.refused_port << "\"; verify: false; },\n"
         << "    { hosts: [ \"a.test\" ]; backend: \"" << site.web.address() << "\"; }\n"
         << "  );\n"
         << "};\n";
    return text.str();
}

// curl over TLS to the daemon for the name `host`, trusting the test CA only.
std::string curl_tls(const SmokeSite& site, const std::string& host) {
    return "--resolve " + host + ":" + std::to_string(site.tls_listen) + ":127.0.0.1 --cacert " +
           site.pki.ca.string() + " ";
}

std::string url(const SmokeSite& site, const std::string& host, const std::string& path) {
    return "'https://" + host + ":" + std::to_string(site.tls_listen) + path + "'";
}

}  // namespace

TEST_CASE("tls terminate: requests on one TLS connection reach an http backend, bodies exact",
          "[tls][tls_terminate]") {
    require_root();
    SmokeSite site;
    auto daemon = start_daemon("copy", smoke_config(site));

    // One curl, three transfers to the same origin: curl keeps the TLS connection for all.
    constexpr std::size_t kUpload = 3 * 1024 * 1024 + 17;
    constexpr std::size_t kDownload = 5 * 1024 * 1024 + 3;
    const fs::path body = site.pki.dir.path() / "upload.bin";
    const fs::path downloaded = site.pki.dir.path() / "download.bin";
    std::string upload = ByteGenerator(99).take(kUpload);
    { std::ofstream(body, std::ios::binary) << upload; }
    const std::string tls = curl_tls(site, "a.test");
    const CommandResult result = run_command(
        "curl -sS --max-time 60 " + tls + "-H 'X-Forwarded-For: 198.18.0.9' " +
        url(site, "a.test", "/first") + " --next " + tls + "--data-binary @" + body.string() + " " +
        url(site, "a.test", "/upload") + " --next " + tls + "-o " + downloaded.string() + " " +
        url(site, "a.test", "/huge/" + std::to_string(kDownload)));
    INFO(result.output << daemon->log_tail());
    CHECK(result.exit_code == 0);
    CHECK(result.output == "web GET /firstweb POST /upload");

    REQUIRE(site.web.wait_for_requests(3, 10s));
    const auto requests = site.web.requests();
    const RecordedRequest& first = requests.at(0);
    CHECK(first.head.start_line == "GET /first HTTP/1.1");
    CHECK(first.head.header("host") == "a.test:" + std::to_string(site.tls_listen));
    CHECK(first.head.header("x-forwarded-proto") == "https");
    // A client's own X-Forwarded-For is kept and the peer appended, as on port 80.
    CHECK(first.head.header("x-forwarded-for") == "198.18.0.9, 127.0.0.1");
    const RecordedRequest& posted = requests.at(1);
    CHECK(posted.body_bytes == kUpload);
    CHECK(posted.body_sha256 == sha256_hex(upload));
    CHECK(requests.at(2).target == "/huge/" + std::to_string(kDownload));
    CHECK(requests.at(2).head.header("x-forwarded-for") == "127.0.0.1");

    std::ifstream in(downloaded, std::ios::binary);
    const std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(got.size() == kDownload);
    CHECK(sha256_hex(got) == sha256_of_generated("", kHugeSeed, kDownload));

    // Each request has its access line, marked tls=1, all on one connection.
    std::set<std::string> connections;
    for (const std::string& path :
         {std::string("/first"), std::string("/upload"), "/huge/" + std::to_string(kDownload)}) {
        const auto line = access_line(*daemon, path, 200);
        REQUIRE(line.has_value());
        CHECK(line->get("tls") == "1");
        CHECK(line->get("backend") == site.web.address());
        connections.insert(std::string(line->get("conn")));
    }
    CHECK(connections.size() == 1);
    // Which TLS path the daemon said it uses, once.
    const auto path_line = daemon->wait_for_log("tls", {}, 1s);
    REQUIRE(path_line.has_value());
    CHECK(path_line->get("tls_path") == "userspace");
    stop_daemon(*daemon);
}

TEST_CASE("tls terminate: an https:// backend is answered 502 naming why, and serving goes on",
          "[tls][tls_terminate]") {
    require_root();
    SmokeSite site;
    auto daemon = start_daemon("copy", smoke_config(site));
    const CommandResult result =
        run_command("curl -sS --max-time 20 -o /dev/null -w '%{http_code}' " +
                    curl_tls(site, "tls-upstream.a.test") + "-k " +
                    url(site, "tls-upstream.a.test", "/via-tls"));
    INFO(result.output << daemon->log_tail());
    CHECK(result.output == "502");
    const auto line = access_line(*daemon, "/via-tls", 502);
    REQUIRE(line.has_value());
    // https:// backends are served now (test_tls_upstream.cpp): nothing listens on this one.
    CHECK(line->get("error") == "backend connect: Connection refused");
    CHECK(line->get("tls") == "1");

    const CommandResult after = run_command("curl -sS --max-time 20 " + curl_tls(site, "a.test") +
                                            url(site, "a.test", "/after"));
    CHECK(after.output == "web GET /after");
    stop_daemon(*daemon);
}

TEST_CASE("tls terminate: a client silent after its ClientHello is closed at header_timeout",
          "[tls][tls_terminate]") {
    require_root();
    SmokeSite site;
    auto daemon = start_daemon("copy", smoke_config(site));
    // A real hello for a.test: the terminating rule takes it and the server's flight comes
    // back; the client never sends its Finished. The https header_timeout (5 s) bounds the
    // handshake from the accept.
    UniqueFd client = connect_loopback(site.tls_listen);
    REQUIRE(client.valid());
    write_all(client.get(), make_client_hello({.server_name = "a.test"}));
    const auto started = Clock::now();
    timeval wait{.tv_sec = 1, .tv_usec = 0};
    ::setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof(wait));
    std::size_t answered = 0;
    bool ended = false;
    // Bounded: 12 one-second waits at most, whatever the daemon does.
    for (int round = 0; round < 12 && !ended; ++round) {
        char buffer[4096];
        const ssize_t got = ::recv(client.get(), buffer, sizeof(buffer), 0);
        if (got > 0) {
            answered += static_cast<std::size_t>(got);
        } else if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            ended = true;
        }
    }
    const auto waited = Clock::now() - started;
    INFO(daemon->log_tail());
    CHECK(answered > 0);  // the ServerHello flight: the daemon did answer the hello
    CHECK(ended);
    CHECK(waited > 3s);
    CHECK(waited < 9s);
    // Closed, not answered: a 408 cannot go through a handshake that did not finish.
    const auto closed = daemon->wait_for_log("closed", {}, 2s);
    REQUIRE(closed.has_value());
    CHECK(closed->get("end") == "tls_handshake_timeout");
    CHECK(daemon->logs("http").empty());
    stop_daemon(*daemon);
}

TEST_CASE("tls terminate: after a 101 the connection is relayed through TLS, not closed",
          "[tls][tls_terminate]") {
    require_root();
    SmokeSite site;
    auto daemon = start_daemon("copy", smoke_config(site));
    // The backend's /ws answers 101 and echoes; a spliced plane cannot carry a TLS client
    // side, so the daemon relays it through OpenSSL (daemon/tls_relay.h; the full WebSocket
    // exchange is test_tls_websocket.cpp). s_client keeps the connection open until its
    // timeout.
    const SClientResult result = run_s_client(
        {.port = site.tls_listen,
         .servername = "a.test",
         .input = "GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\n\r\n",
         .timeout = 3s});
    INFO(result.output << daemon->log_tail());
    CHECK(result.handshake_done);
    CHECK(result.output.find("HTTP/1.1 101") != std::string::npos);
    const auto routed = daemon->wait_for_log(
        "routed", [](const LogLine& line) { return line.get("protocol") == "http-upgrade"; }, 5s);
    REQUIRE(routed.has_value());
    CHECK(routed->get("plane") == "tls_relay");
    CHECK(daemon->logs("closed", [](const LogLine& line) {
                    return line.get("end") == "upgrade_unsupported_over_tls";
                }).empty());
    const auto line = access_line(*daemon, "/ws", 101);
    REQUIRE(line.has_value());
    CHECK(line->get("tls") == "1");
    stop_daemon(*daemon);
}

TEST_CASE("tls terminate: Connection close ends with a close_notify after the whole response",
          "[tls][tls_terminate]") {
    require_root();
    SmokeSite site;
    auto daemon = start_daemon("copy", smoke_config(site));
    constexpr std::size_t kDownload = 2 * 1024 * 1024 + 1;
    const fs::path downloaded = site.pki.dir.path() / "closing.bin";
    // The close follows the response's last byte: a reset from closing too early would cut
    // the body, which the length and digest checks catch.
    const CommandResult result = run_command(
        "curl -sS --max-time 30 " + curl_tls(site, "a.test") + "-H 'Connection: close' -o " +
        downloaded.string() + " " + url(site, "a.test", "/huge/" + std::to_string(kDownload)));
    INFO(result.output << daemon->log_tail());
    CHECK(result.exit_code == 0);
    std::ifstream in(downloaded, std::ios::binary);
    const std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(got.size() == kDownload);
    CHECK(sha256_hex(got) == sha256_of_generated("", kHugeSeed, kDownload));
    // splicer closed it (Connection: close), after its close_notify: end=done.
    const auto closed = daemon->wait_for_log(
        "closed", [](const LogLine& line) { return line.get("end") == "done"; }, 5s);
    CHECK(closed.has_value());
    stop_daemon(*daemon);
}
