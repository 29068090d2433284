// The TLS termination settings (issue 14 point 2): `terminate` on a tls rule and the `https`
// section, each mistake named with its setting and line as `splicer check` prints it; and
// dist/examples/snikket-nginx-443.conf, Snikket's nginx :443 block as splicer config,
// loaded exactly as shipped.

#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "splicer/config.h"
#include "support/config_text.h"

namespace splicer::test {
namespace {

using config::BackendScheme;

std::string read_whole(const std::string& path) {
    std::ifstream in(path);
    REQUIRE(in.good());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Line 1: listen; line 2: the rule with `rule_extra` inside; from line 3: `rest`.
std::string with_rule(const std::string& rule_extra, const std::string& rest) {
    return "listen: ( { host: \"127.0.0.1\"; port: 443; } );\n"
           "protocols: ( { name: \"tls\"; " +
           rule_extra + " } );\n" + rest;
}

// Lines 3-6: an https section with one certificate (line 4) and one route (line 5).
const std::string kHttps =
    "https: {\n"
    "  certificates: ( { certificate: \"/c.pem\"; key: \"/k.pem\"; } );\n"
    "  routes: ( { hosts: [ \"*\" ]; backend: \"https://127.0.0.1:5443\"; } );\n"
    "};\n";

}  // namespace

TEST_CASE("https config: Snikket's nginx 443 block as shipped in dist/examples loads",
          "[config][tls_termination]") {
    const std::string path =
        std::string(SPLICER_SOURCE_DIR) + "/dist/examples/snikket-nginx-443.conf";
    const config::LoadResult loaded = config::load_string(read_whole(path), path);
    CAPTURE(all_diagnostics(loaded, path));
    REQUIRE(loaded.ok());
    CHECK(loaded.diagnostics.empty());
    const config::Config& config = *loaded.config;
    const std::vector<std::string> names = {"chat.example.com", "groups.chat.example.com",
                                            "share.chat.example.com"};
    REQUIRE(config.rules.size() == 2);
    CHECK(config.rules[0].terminate);
    CHECK(config.rules[0].sni_hostnames == names);
    CHECK_FALSE(config.rules[1].terminate);
    REQUIRE(config.https);
    REQUIRE(config.https->certificates.size() == 1);
    CHECK(config.https->certificates[0].certificate == "/path/to/certificate.pem");
    CHECK(config.https->certificates[0].key == "/path/to/key.pem");
    CHECK(config.https->certificates[0].ocsp_response.empty());
    CHECK(config.https->limits.max_body_size == 20ULL * 1024 * 1024);  // client_max_body_size 20MB
    REQUIRE(config.https->routes.size() == 1);
    const config::HttpRoute& route = config.https->routes[0];
    CHECK(route.hosts == names);
    CHECK(route.backend_scheme == BackendScheme::https);
    CHECK(config::to_string(route.backend) == "127.0.0.1:5443");
    CHECK_FALSE(route.verify);    // proxy_ssl_verify off
    CHECK_FALSE(route.set_host);  // Host $host
    REQUIRE(config.http);         // the port 80 block, ACME included
    REQUIRE(config.http->routes.size() == 1);
    CHECK(config.http->routes[0].backend_scheme == BackendScheme::http);
    CHECK(config::to_string(config.http->routes[0].backend) == "127.0.0.1:5080");
}

TEST_CASE("https config: defaults and every setting read", "[config][tls_termination]") {
    const auto loaded = config::load_string(with_rule(
        "terminate: true;",
        "https: {\n"
        "  certificates: ( { certificate: \"a.pem\"; key: \"a.key\"; ocsp_response: \"a.der\"; },\n"
        "                  { certificate: \"b.pem\"; key: \"b.key\"; } );\n"
        "  ticket_key_rotation: 600; max_body_size: \"1M\";\n"
        "  header_timeout: 5; idle_timeout: 6; backend_timeout: 7;\n"
        "  routes: ( { hosts: [ \"a.test\" ]; backend: \"https://[::1]:5443\";\n"
        "              ca_file: \"/ca.pem\"; },\n"
        "            { hosts: [ \"*\" ]; backend: \"127.0.0.1:5080\"; } );\n"
        "};\n"));
    CAPTURE(all_diagnostics(loaded));
    REQUIRE(loaded.ok());
    const config::HttpsConfig& https = *loaded.config->https;
    REQUIRE(https.certificates.size() == 2);
    CHECK(https.certificates[0].ocsp_response == "a.der");
    CHECK(https.certificates[0].path == "https.certificates.[0]");
    CHECK(https.certificates[0].certificate_line == 4);
    CHECK(https.certificates[1].key_line == 5);
    CHECK(https.ticket_key_rotation == std::chrono::seconds(600));
    CHECK(https.limits.max_body_size == 1024 * 1024);
    CHECK(https.limits.backend_timeout == std::chrono::seconds(7));
    REQUIRE(https.routes.size() == 2);
    CHECK(https.routes[0].backend_scheme == BackendScheme::https);
    CHECK(https.routes[0].verify);  // on unless the route says otherwise
    CHECK(https.routes[0].ca_file == "/ca.pem");
    CHECK(https.routes[1].backend_scheme == BackendScheme::http);
    CHECK(https.routes[1].line == 10);

    const std::string text = config::describe(*loaded.config);
    CHECK_THAT(text, Catch::Contains("rule 0: tls -> terminate (https routes) (line 2)"));
    CHECK_THAT(text,
               Catch::Contains(
                   "https certificate 0: a.pem key a.key ocsp_response a.der (default) (line 4)"));
    CHECK_THAT(text, Catch::Contains("https certificate 1: b.pem key b.key (line 5)"));
    CHECK_THAT(text, Catch::Contains("https ticket key rotation: 600 s"));
    CHECK_THAT(text, Catch::Contains("https max body size: 1M"));
    CHECK_THAT(text,
               Catch::Contains(
                   "https route 0: hosts=[a.test] -> https://[::1]:5443 verify=/ca.pem (line 8)"));
    CHECK_THAT(text, Catch::Contains("https route 1: hosts=[*] -> 127.0.0.1:5080 (line 10)"));
}

TEST_CASE("https config: each mistake is named with its setting and line",
          "[config][tls_termination]") {
    struct Case {
        std::string label;
        std::string text;
        std::string expected;  // one diagnostic line, as `splicer check` prints it
    };
    const std::vector<Case> cases = {
        {"terminate with a host", with_rule("terminate: true; host: \"127.0.0.1\";", kHttps),
         "<config>:2: error: protocols.[0].host: not allowed on a terminating rule: its "
         "requests go to the backends of the https routes"},
        {"terminate on an xmpp rule",
         "listen: ( { host: \"127.0.0.1\"; port: 443; } );\n"
         "protocols: ( { name: \"xmpp\"; terminate: true; host: \"127.0.0.1\"; port: 5222; } );\n" +
             kHttps,
         "<config>:2: error: protocols.[0].terminate: only allowed on tls rules (this rule is "
         "xmpp)"},
        {"terminate without an https section", with_rule("terminate: true;", ""),
         "<config>:2: error: protocols.[0].terminate: terminate needs an https section with "
         "certificates (and routes for the decrypted requests)"},
        {"an https section without certificates",
         with_rule("terminate: true;", "https: {\n  max_body_size: \"1M\";\n};\n"),
         "<config>:3: error: https.certificates: missing required setting: TLS termination "
         "needs a certificate"},
        {"an empty certificate list",
         with_rule("terminate: true;", "https: {\n  certificates: ( );\n};\n"),
         "<config>:4: error: https.certificates: empty list: at least one certificate is "
         "needed"},
        {"a certificate entry without its key",
         with_rule("terminate: true;",
                   "https: {\n  certificates: ( { certificate: \"/c.pem\"; } );\n};\n"),
         "<config>:4: error: https.certificates.[0].key: missing required setting"},
        {"an empty key path",
         with_rule("terminate: true;",
                   "https: {\n  certificates: ( { certificate: \"/c.pem\";\n"
                   "    key: \"\"; } );\n};\n"),
         "<config>:5: error: https.certificates.[0].key: empty: expected a file path"},
        {"an https:// backend on a port 80 route",
         with_rule(
             "host: \"127.0.0.1\"; port: 5443;",
             "http: { listen: ( { host: \"127.0.0.1\"; port: 80; } );\n"
             "  routes: ( { hosts: [ \"*\" ]; backend: \"https://127.0.0.1:5443\"; } ); };\n"),
         "<config>:4: error: http.routes.[0].backend: an https:// backend is for https routes "
         "only (the port 80 proxy connects to its backends in plain HTTP)"},
        {"verify on a plain backend",
         with_rule("terminate: true;",
                   "https: {\n  certificates: ( { certificate: \"/c.pem\"; key: \"/k.pem\"; } );\n"
                   "  routes: ( { hosts: [ \"*\" ]; backend: \"http://127.0.0.1:5080\";\n"
                   "    verify: false; } );\n};\n"),
         "<config>:6: error: https.routes.[0].verify: only with an https:// backend (this "
         "route's backend is plain HTTP)"},
        {"ticket_key_rotation too short",
         with_rule("terminate: true;",
                   "https: {\n  certificates: ( { certificate: \"/c.pem\"; key: \"/k.pem\"; } );\n"
                   "  ticket_key_rotation: 5;\n};\n"),
         "<config>:5: error: https.ticket_key_rotation: bad duration 5: expected 60..86400 "
         "seconds"},
        {"an unknown setting in a certificate entry",
         with_rule("terminate: true;",
                   "https: {\n  certificates: ( { certificate: \"/c.pem\"; key: \"/k.pem\";\n"
                   "    chain: \"/x.pem\"; } );\n};\n"),
         "<config>:5: error: https.certificates.[0].chain: unknown setting"},
        {"an https section no rule uses", with_rule("host: \"127.0.0.1\"; port: 5443;", kHttps),
         "<config>:3: notice: https: unused: no tls rule has terminate: true"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.label, c.text);
        const config::LoadResult loaded = config::load_string(c.text);
        const std::string diagnostics = all_diagnostics(loaded);
        CHECK_THAT(diagnostics, Catch::Contains(c.expected));
        const bool is_error = c.expected.find(": error: ") != std::string::npos;
        CHECK(loaded.ok() == !is_error);
    }
}

}  // namespace splicer::test
