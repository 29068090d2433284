#pragma once
// Shared by the port 80 integration tests: the nginx server block (plus the redirect
// variant, a wildcard, a default route and failing backends) as splicer config on test ports,
// curl and raw-socket clients, and the access-log lookup.

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "daemon_test_common.h"
#include "support/command.h"
#include "support/http_backend.h"
#include "support/http_wire.h"
#include "support/sockets.h"
#include "support/test_certificates.h"

namespace splicer::test {

struct HttpSite {
    HttpBackend snikket{"snikket"};  // 127.0.0.1:5080 in the nginx block
    HttpBackend intranet{"intranet"};  // the set_host / redirect_https route
    HttpBackend fallback{"fallback"};  // "*" (only with a default route)
    BlackholeListener blackhole;       // connects time out
    std::uint16_t refused_port = free_port();  // nothing listens: connects are refused
    std::uint16_t listen = free_port();
    std::uint16_t tls_listen = free_port();
};

struct HttpConfigOptions {
    bool default_route = false;
    std::string splice_mode = "copy";
};

// The nginx block of issue 4 (three names -> snikket, max body 20M) plus the test routes.
inline std::string http_site_config(const HttpSite& site, const HttpConfigOptions& options = {}) {
    std::ostringstream text;
    text << "listen: ( { host: \"127.0.0.1\"; port: \"" << site.tls_listen << "\"; } );\n"
         << "protocols: ( { name: \"tls\"; host: \"127.0.0.1\"; port: \"" << site.refused_port
         << "\"; } );\n"
         << "connect_timeout: 1;\n"
         << "http: {\n"
         << "  listen: ( { host: \"127.0.0.1\"; port: \"" << site.listen << "\"; } );\n"
         << "  max_body_size: \"20M\";\n"
         << "  header_timeout: 2;\n  idle_timeout: 5;\n  backend_timeout: 2;\n"
         << "  routes: (\n"
         << "    { hosts: [ \"chat.example.com\", \"groups.chat.example.com\", "
            "\"share.chat.example.com\" ]; backend: \""
         << site.snikket.address() << "\"; },\n"
         << "    { hosts: [ \"www.example.com\", \"*.wild.example.com\" ]; backend: \""
         << site.intranet.address()
         << "\"; set_host: \"intranet.local\"; redirect_https: true; },\n"
         << "    { hosts: [ \"api.example.com\" ]; backend: \"" << site.intranet.address()
         << "\"; set_host: \"intranet.local\"; },\n"
         << "    { hosts: [ \"small.example.com\" ]; backend: \"" << site.snikket.address()
         << "\"; max_body_size: \"1K\"; },\n"
         << "    { hosts: [ \"refused.example.com\" ]; backend: \"127.0.0.1:" << site.refused_port
         << "\"; },\n"
         << "    { hosts: [ \"blackhole.example.com\" ]; backend: \"127.0.0.1:"
         << site.blackhole.port() << "\"; }";
    if (options.default_route) {
        text << ",\n    { hosts: [ \"*\" ]; backend: \"" << site.fallback.address() << "\"; }";
    }
    text << "\n  );\n};\n";
    return text.str();
}

inline std::unique_ptr<DaemonProcess> start_http_daemon(const HttpSite& site,
                                                        const HttpConfigOptions& options = {}) {
    require_root();
    return start_daemon(options.splice_mode, http_site_config(site, options));
}

inline std::string get_request(const std::string& host, const std::string& target = "/",
                               const std::string& extra = "") {
    return "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + extra + "\r\n";
}

// POST `path` to `host` with an 8 MiB body, more than the loopback socket buffers take, and
// the response read while the body is still going out: for a backend that answers (and
// closes) before it has read the body. The sender gives up once splicer closes.
inline HttpResponse post_answered_early(std::uint16_t port, const std::string& host,
                                        const std::string& path) {
    UniqueFd client = connect_loopback(port);
    const std::string body(8 << 20, 'u');
    write_all(client.get(), "POST " + path + " HTTP/1.1\r\nHost: " + host +
                                "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n");
    std::thread sender([&] {
        try {
            write_all(client.get(), body);
        } catch (const std::exception&) {
            // splicer closes once the answer is relayed: the rest is refused
        }
    });
    BufferedReader reader(client.get(), std::chrono::seconds(10));
    HttpResponse response = read_response(reader);
    ::shutdown(client.get(), SHUT_RDWR);
    sender.join();
    return response;
}

// A listener on 127.0.0.1:`listen` terminating TLS with `pki`'s a.test certificate, whose one
// https route sends a.test to `backend` (an https:// URL) verified against `pki`'s CA.
// `top_level`, `https_settings` and `route_settings` go verbatim before the listener, into
// the https section and into the route.
inline std::string a_test_https_route_config(std::uint16_t listen, const TestCertificates& pki,
                                             const std::string& backend,
                                             const std::string& top_level = "",
                                             const std::string& https_settings = "",
                                             const std::string& route_settings = "") {
    std::ostringstream text;
    text << top_level << "listen: ( { host: \"127.0.0.1\"; port: \"" << listen << "\"; } );\n"
         << "protocols: ( { name: \"tls\"; terminate: true; } );\n"
         << "https: {\n"
         << "  certificates: ( { certificate: \"" << pki.a_chain.string() << "\"; key: \""
         << pki.a_key.string() << "\"; } );\n"
         << https_settings << "  routes: ( { hosts: [ \"a.test\" ]; backend: \"" << backend
         << "\"; ca_file: \"" << pki.ca.string() << "\"; " << route_settings << "} );\n"
         << "};\n";
    return text.str();
}

// The access line for the request whose path is `path` (and status, if given).
inline std::optional<LogLine> access_line(const DaemonProcess& daemon, const std::string& path,
                                          int status = 0) {
    return daemon.wait_for_log("http", [&](const LogLine& line) {
        return line.get("path") == path &&
               (status == 0 || line.get("status") == std::to_string(status));
    });
}

// After an error case: a normal request on a new connection still gets its answer.
inline void check_http_still_serving(const HttpSite& site) {
    const HttpResponse response =
        http_exchange(site.listen, get_request("chat.example.com", "/still-serving"));
    CHECK(response.status == 200);
    CHECK(response.body == "snikket GET /still-serving");
}

// Runs curl against the daemon for `path`; returns its output (-w format included).
inline CommandResult curl(const HttpSite& site, const std::string& arguments,
                          const std::string& path = "/") {
    return run_command("curl -sS --max-time 30 " + arguments + " 'http://127.0.0.1:" +
                       std::to_string(site.listen) + path + "'");
}

}  // namespace splicer::test
