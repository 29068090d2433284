#pragma once
// Shared by the TLS termination tests (test_tls_termination*.cpp): a terminating daemon on
// test ports with a CA-signed certificate for the Snikket names, a recording HTTP backend
// behind its https routes, and the clients (curl, openssl s_client) pointed at it.

#include <catch2/catch.hpp>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "daemon_test_common.h"
#include "support/command.h"
#include "support/http_backend.h"
#include "support/openssl_client.h"
#include "support/test_certificates.h"
#include "support/tls_test_client.h"

namespace splicer::test {

struct TerminatingSite {
    TestCertificates pki;
    IssuedCertificate snikket = pki.issue("snikket", kSnikketNames);
    HttpBackend web{"web"};  // behind the https routes
    std::uint16_t listen = free_port();
};

struct TerminatingOptions {
    // Certificate entries after the Snikket one (the first, so the default).
    std::vector<IssuedCertificate> more_certificates;
    int header_timeout = 10;
    int idle_timeout = 60;
    std::string max_body_size = "20M";
    std::uint16_t metrics_port = 0;  // 0: no metrics endpoint
};

// One tls rule terminating every ClientHello (no sni_hostnames), every Host to site.web.
inline std::string terminating_config(const TerminatingSite& site,
                                      const TerminatingOptions& options = {}) {
    std::ostringstream text;
    text << "listen: ( { host: \"127.0.0.1\"; port: \"" << site.listen << "\"; } );\n"
         << "protocols: ( { name: \"tls\"; terminate: true; } );\n"
         << "timeout: 2;\nconnect_timeout: 2;\n";
    if (options.metrics_port != 0) {
        text << "metrics: { host: \"127.0.0.1\"; port: " << options.metrics_port << "; };\n";
    }
    text << "https: {\n  certificates: (\n"
         << "    { certificate: \"" << site.snikket.chain.string() << "\"; key: \""
         << site.snikket.key.string() << "\"; }";
    for (const IssuedCertificate& more : options.more_certificates) {
        text << ",\n    { certificate: \"" << more.chain.string() << "\"; key: \""
             << more.key.string() << "\"; }";
    }
    text << "\n  );\n"
         << "  max_body_size: \"" << options.max_body_size << "\";\n"
         << "  header_timeout: " << options.header_timeout << ";\n"
         << "  idle_timeout: " << options.idle_timeout << ";\n"
         << "  backend_timeout: 10;\n"
         << "  routes: ( { hosts: [ \"*\" ]; backend: \"" << site.web.address() << "\"; } );\n"
         << "};\n";
    return text.str();
}

// A GET for `path` on chat.example.com that keeps the connection open.
inline std::string keep_alive_get(const std::string& path) {
    return "GET " + path + " HTTP/1.1\r\nHost: chat.example.com\r\n\r\n";
}

// One keep-alive GET on `client`'s connection, answered whole by the site's web backend.
inline void check_served(TlsTestClient& client, const std::string& path) {
    const HttpResponse answer = client.exchange(keep_alive_get(path));
    CAPTURE(path, answer.raw_head);
    CHECK(answer.complete);
    CHECK(answer.status == 200);
    CHECK(answer.body == "web GET " + path);
}

// What s_client sends through a terminating listener: one request, then the server closes.
inline std::string closing_request(const std::string& host, const std::string& path) {
    return "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n";
}

// s_client to the terminating listener asking for `path` by `servername` (the Host too).
inline SClientResult s_client_request(const TerminatingSite& site, const std::string& servername,
                                      const std::string& path,
                                      std::vector<std::string> extra_args = {},
                                      std::vector<std::string> alpn = {}) {
    SClientOptions options;
    options.port = site.listen;
    options.servername = servername;
    options.alpn = std::move(alpn);
    options.input = closing_request(servername.empty() ? "chat.example.com" : servername, path);
    options.extra_args = std::move(extra_args);
    options.timeout = std::chrono::seconds(15);
    return run_s_client(options);
}

// `openssl x509 -noout -ext subjectAltName -subject` of a PEM certificate: its
// "DNS:a.test, DNS:b.test" line ("" when it has none).
inline std::string subject_alt_names(const std::string& pem) {
    const TempDir dir("splicer-peer-cert");
    const auto file = dir.write_file("peer.pem", pem);
    const CommandResult result =
        run_command("openssl x509 -noout -ext subjectAltName -in " + file.string());
    std::istringstream lines(result.output);
    std::string line;
    std::string names;
    while (std::getline(lines, line)) {
        const std::size_t start = line.find_first_not_of(' ');
        if (start != std::string::npos && line.compare(start, 4, "DNS:") == 0) {
            names = line.substr(start);
        }
    }
    return names;
}

}  // namespace splicer::test
