// Config loading: sslh files load unchanged, splicer's own settings, and every error names
// the setting and the line.

#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "splicer/config.h"
#include "support/config_text.h"

using splicer::config::Config;
using splicer::config::Diagnostic;
using splicer::config::drop_trailing_commas;
using splicer::config::Endpoint;
using splicer::config::LoadResult;
using splicer::config::ProbeKind;
using splicer::config::SpliceMode;
using splicer::test::all_diagnostics;

namespace {

// The sslh configuration from Snikket's reverse proxy page, byte for byte: note the trailing
// commas that libconfig 1.5 refuses on its own.
constexpr std::string_view kSnikketSslh = R"(listen:
(
    { host: "0.0.0.0"; port: "443"; },
);

protocols:
(
     { name: "tls";     host: "127.0.0.1"; port: "5223"; alpn_protocols: [ "xmpp-client" ]; },
     { name: "tls";     host: "127.0.0.1"; port: "5443"; sni_hostnames:  [ "chat.example.com", "groups.chat.example.com", "share.chat.example.com" ] },
     { name: "xmpp";    host: "127.0.0.1"; port: "5222"; },
);
)";

// Two valid lines; tests append their own settings from line 3 on.
constexpr std::string_view kBase =
    "listen: ( { host: \"0.0.0.0\"; port: \"443\"; } );\n"
    "protocols: ( { name: \"tls\"; host: \"127.0.0.1\"; port: \"5443\"; } );\n";

std::string fixture(std::string_view name) {
    return std::string(SPLICER_FIXTURES_DIR) + "/config/" + std::string(name);
}

std::vector<Diagnostic> errors_of(const LoadResult& result) {
    std::vector<Diagnostic> errors;
    for (const Diagnostic& diagnostic : result.diagnostics) {
        if (diagnostic.severity == Diagnostic::Severity::error) {
            errors.push_back(diagnostic);
        }
    }
    return errors;
}

const Diagnostic* find_diagnostic(const LoadResult& result, std::string_view setting) {
    for (const Diagnostic& diagnostic : result.diagnostics) {
        if (diagnostic.setting == setting) {
            return &diagnostic;
        }
    }
    return nullptr;
}

// Loads text that must load with no diagnostic at all.
Config load_clean(std::string_view text) {
    const LoadResult result = splicer::config::load_string(text);
    INFO(all_diagnostics(result));
    REQUIRE(result.ok());
    REQUIRE(result.diagnostics.empty());
    return *result.config;
}

void check_snikket_rules(const Config& config) {
    REQUIRE(config.listeners.size() == 1);
    CHECK(config.listeners[0].address.host == "0.0.0.0");
    CHECK(config.listeners[0].address.port == 443);
    CHECK(config.listeners[0].line == 3);

    REQUIRE(config.rules.size() == 3);
    const auto& alpn = config.rules[0];
    CHECK(alpn.name == "tls");
    CHECK(alpn.probe == ProbeKind::tls);
    CHECK(alpn.backend.host == "127.0.0.1");
    CHECK(alpn.backend.port == 5223);
    CHECK(alpn.alpn_protocols == std::vector<std::string>{"xmpp-client"});
    CHECK(alpn.sni_hostnames.empty());
    CHECK(alpn.line == 8);

    const auto& sni = config.rules[1];
    CHECK(sni.name == "tls");
    CHECK(sni.probe == ProbeKind::tls);
    CHECK(sni.backend.port == 5443);
    CHECK(sni.alpn_protocols.empty());
    CHECK(sni.sni_hostnames == std::vector<std::string>{"chat.example.com",
                                                        "groups.chat.example.com",
                                                        "share.chat.example.com"});
    CHECK(sni.line == 9);

    const auto& xmpp = config.rules[2];
    CHECK(xmpp.name == "xmpp");
    CHECK(xmpp.probe == ProbeKind::xmpp);
    CHECK(splicer::config::to_string(xmpp.backend) == "127.0.0.1:5222");
    CHECK(xmpp.line == 10);

    CHECK(config.probe_timeout == std::chrono::milliseconds{2000});
    CHECK_FALSE(config.on_timeout_rule.has_value());
    CHECK(config.splice_mode == SpliceMode::automatic);
    CHECK_FALSE(config.http.has_value());
}

}  // namespace

TEST_CASE("the Snikket sslh snippet loads unchanged", "[config]") {
    check_snikket_rules(load_clean(kSnikketSslh));
}

TEST_CASE("the Snikket sslh fixture file loads", "[config]") {
    const LoadResult result = splicer::config::load_file(fixture("snikket-sslh.conf"));
    INFO(all_diagnostics(result));
    REQUIRE(result.ok());
    CHECK(result.diagnostics.empty());
    check_snikket_rules(*result.config);

    // The fixture is the same text as the snippet above, byte for byte.
    std::ifstream file(fixture("snikket-sslh.conf"), std::ios::binary);
    const std::string contents{std::istreambuf_iterator<char>(file),
                               std::istreambuf_iterator<char>()};
    CHECK(contents == kSnikketSslh);
}

TEST_CASE("line numbers survive trailing comma dropping", "[config]") {
    // Same shape as the Snikket file; the bad port sits on line 9, after trailing commas on
    // lines 3 and 8 and a comment holding a comma before a bracket.
    const std::string text =
        "listen:\n"
        "(\n"
        "    { host: \"0.0.0.0\"; port: \"443\"; },\n"
        ");\n"
        "# trailing, ) commas in comments stay\n"
        "protocols:\n"
        "(\n"
        "     { name: \"tls\"; host: \"127.0.0.1\"; port: \"5223\"; },\n"
        "     { name: \"tls\"; host: \"127.0.0.1\"; port: \"99999\"; },\n"
        ");\n";
    const LoadResult result = splicer::config::load_string(text, "sslh.cfg");
    CHECK_FALSE(result.ok());
    REQUIRE(result.diagnostics.size() == 1);
    CHECK(splicer::config::format(result.diagnostics[0], "sslh.cfg") ==
          "sslh.cfg:9: error: protocols.[1].port: bad port \"99999\": expected a number 1..65535");
}

TEST_CASE("a syntax error reports libconfig's line", "[config]") {
    const LoadResult result = splicer::config::load_string(
        "listen:\n(\n    { host: \"0.0.0.0\"; port \"443\"; },\n);\n", "x.conf");
    REQUIRE_FALSE(result.ok());
    REQUIRE(result.diagnostics.size() == 1);
    CHECK(result.diagnostics[0].line == 3);
    CHECK(result.diagnostics[0].setting.empty());
    CHECK(splicer::config::format(result.diagnostics[0], "x.conf") ==
          "x.conf:3: error: syntax: syntax error");
}

// Found by tests/fuzz/fuzz_config: libconfig 1.5 leaks the discarded string token here
// (hyperrealm/libconfig#142, suppressed in tests/fuzz/lsan.supp); splicer must still answer
// with one clean syntax error naming the line, and never throw.
TEST_CASE("a syntax error after a string token is a clean error", "[config]") {
    auto [text, line] = GENERATE(table<std::string, int>({
        {"\"0\"0", 1},
        {"# comment\nuser: \"a\" \"b\" ];\n", 2},
        {"listen: \"\" (", 1},
    }));
    CAPTURE(text);
    const LoadResult result = splicer::config::load_string(text, "x.conf");
    REQUIRE_FALSE(result.ok());
    REQUIRE(result.diagnostics.size() == 1);
    CHECK(splicer::config::format(result.diagnostics[0], "x.conf") ==
          "x.conf:" + std::to_string(line) + ": error: syntax: syntax error");
}

TEST_CASE("a comment may end the file without a newline", "[config]") {
    const Config config = load_clean(std::string(kBase) + "# the end");
    CHECK(config.rules.size() == 1);
}

TEST_CASE("drop_trailing_commas", "[config]") {
    const auto [input, expected] = GENERATE(table<std::string, std::string>({
        {"( a, )", "( a )"},
        {"[ 1, 2, ]", "[ 1, 2 ]"},
        {"(a,)", "(a)"},
        {"(\n  { x = 1; },\n);\n", "(\n  { x = 1; }\n);\n"},
        {"( a,\n\n\n )", "( a\n\n\n )"},
        {"( a, # note, )\n)", "( a # note, )\n)"},
        {"( a, // note\n)", "( a // note\n)"},
        {"( a, /* note, ] */ )", "( a /* note, ] */ )"},
        {"( a, /* 1\n2 */ )", "( a /* 1\n2 */ )"},
        // Strings and comments are left alone, escaped quotes included.
        {"s = \"a, )\";", "s = \"a, )\";"},
        {"s = \"a\\\", )\";", "s = \"a\\\", )\";"},
        {"s = \"\\\\\"; t = ( 1, );", "s = \"\\\\\"; t = ( 1 );"},
        {"# ( a, )", "# ( a, )"},
        {"// [ a, ]", "// [ a, ]"},
        {"/* ( a, ) */", "/* ( a, ) */"},
        // Only commas before ) or ] that end an element.
        {"g = { a = 1, };", "g = { a = 1, };"},
        {"( a, b )", "( a, b )"},
        {"( , )", "( , )"},
        {"( a,, )", "( a,, )"},
        {"( a, /* unterminated", "( a, /* unterminated"},
        {"s = \"unterminated, )", "s = \"unterminated, )"},
        {"", ""},
    }));
    CAPTURE(input);
    CHECK(drop_trailing_commas(input) == expected);
}

TEST_CASE("the embedded default loads cleanly with Snikket's rules", "[config]") {
    const Config config = load_clean(splicer::config::embedded_default_text());
    REQUIRE(config.listeners.size() == 1);
    CHECK(splicer::config::to_string(config.listeners[0].address) == "0.0.0.0:443");

    REQUIRE(config.rules.size() == 3);
    CHECK(config.rules[0].probe == ProbeKind::tls);
    CHECK(config.rules[0].alpn_protocols == std::vector<std::string>{"xmpp-client"});
    CHECK(splicer::config::to_string(config.rules[0].backend) == "127.0.0.1:5223");
    CHECK(config.rules[1].probe == ProbeKind::tls);
    CHECK(config.rules[1].alpn_protocols.empty());
    CHECK(config.rules[1].sni_hostnames.empty());
    CHECK(splicer::config::to_string(config.rules[1].backend) == "127.0.0.1:5443");
    CHECK(config.rules[2].probe == ProbeKind::xmpp);
    CHECK(splicer::config::to_string(config.rules[2].backend) == "127.0.0.1:5222");
    CHECK(config.splice_mode == SpliceMode::automatic);

    REQUIRE(config.http.has_value());
    REQUIRE(config.http->listeners.size() == 1);
    CHECK(splicer::config::to_string(config.http->listeners[0].address) == "0.0.0.0:80");
    REQUIRE(config.http->routes.size() == 1);
    CHECK(config.http->routes[0].hosts == std::vector<std::string>{"*"});
    CHECK(config.http->routes[0].path_prefix == "/");
    CHECK(splicer::config::to_string(config.http->routes[0].backend) == "127.0.0.1:5080");
    CHECK(config.http->limits.max_body_size == 20ULL * 1024 * 1024);
}

TEST_CASE("ports as strings and numbers", "[config]") {
    const auto [port_text, expected] = GENERATE(table<std::string, int>({
        {"\"443\"", 443},
        {"443", 443},
        {"\"1\"", 1},
        {"65535", 65535},
        {"\"0443\"", 443},
        {"0x1BB", 443},
    }));
    CAPTURE(port_text);
    const Config config = load_clean(
        "listen: ( { host: \"0.0.0.0\"; port: " + port_text +
        "; } );\nprotocols: ( { name: \"xmpp\"; host: \"localhost\"; port: " + port_text +
        "; } );\n");
    CHECK(config.listeners[0].address.port == expected);
    CHECK(config.rules[0].backend.port == expected);
}

TEST_CASE("IPv6 hosts", "[config]") {
    const Config config = load_clean(
        "listen: ( { host: \"::\"; port: \"443\"; }, { host: \"[::1]\"; port: 8443; } );\n"
        "protocols: ( { name: \"tls\"; host: \"::1\"; port: \"5443\"; },\n"
        "             { name: \"xmpp\"; host: \"[fe80::1%eth0]\"; port: \"5222\"; },\n"
        "             { name: \"http\"; host: \"backend.example.com.\"; port: \"80\"; } );\n");
    CHECK(config.listeners[0].address.host == "::");
    CHECK(splicer::config::to_string(config.listeners[0].address) == "[::]:443");
    CHECK(config.listeners[1].address.host == "::1");
    CHECK(splicer::config::to_string(config.rules[0].backend) == "[::1]:5443");
    CHECK(config.rules[1].backend.host == "fe80::1%eth0");
    CHECK(splicer::config::to_string(config.rules[2].backend) == "backend.example.com.:80");
}

TEST_CASE("sni_hostnames are normalised and may be wildcards", "[config]") {
    const Config config = load_clean(std::string(kBase.substr(0, kBase.find('\n') + 1)) +
                                     "protocols: ( { name: \"tls\"; host: \"127.0.0.1\"; "
                                     "port: 5443; sni_hostnames: [ \"Chat.Example.COM.\", "
                                     "\"*.Example.org\", \"x_y.local\" ]; } );\n");
    CHECK(config.rules[0].sni_hostnames ==
          std::vector<std::string>{"chat.example.com", "*.example.org", "x_y.local"});
}

TEST_CASE("regex and anyprot rules", "[config]") {
    const Config config = load_clean(
        "listen: ( { host: \"0.0.0.0\"; port: \"443\"; } );\n"
        "protocols: (\n"
        "  { name: \"regex\"; host: \"127.0.0.1\"; port: \"6000\";\n"
        "    regex_patterns: [ \"^SSH-2\\\\.0\", \"^GET /tunnel\" ]; },\n"
        "  { name: \"anyprot\"; host: \"127.0.0.1\"; port: \"7000\"; }\n"
        ");\n");
    REQUIRE(config.rules.size() == 2);
    CHECK(config.rules[0].probe == ProbeKind::regex);
    CHECK(config.rules[0].regex_patterns == std::vector<std::string>{"^SSH-2\\.0", "^GET /tunnel"});
    CHECK(config.rules[0].line == 3);
    CHECK(config.rules[1].probe == ProbeKind::anyprot);
    CHECK(config.rules[1].name == "anyprot");
    CHECK(config.rules[1].backend.port == 7000);
}

TEST_CASE("timeout and on-timeout", "[config]") {
    const auto [timeout_text, expected_ms] = GENERATE(table<std::string, long long>({
        {"2", 2000},
        {"2.5", 2500},
        {"0.25", 250},
        {"5L", 5000},
    }));
    CAPTURE(timeout_text);
    const Config config = load_clean(
        "listen: ( { host: \"0.0.0.0\"; port: \"443\"; } );\n"
        "protocols: ( { name: \"xmpp\"; host: \"127.0.0.1\"; port: \"5222\"; },\n"
        "             { name: \"tls\"; host: \"127.0.0.1\"; port: \"5443\";\n"
        "               sni_hostnames: [ \"a.example\" ]; },\n"
        "             { name: \"tls\"; host: \"127.0.0.1\"; port: \"5444\"; } );\n"
        "timeout: " +
        timeout_text + ";\non-timeout: \"tls\";\n");
    CHECK(config.probe_timeout == std::chrono::milliseconds{expected_ms});
    // The first rule of that name, as sslh picks it.
    REQUIRE(config.on_timeout_rule.has_value());
    CHECK(*config.on_timeout_rule == 1);
}

TEST_CASE("splicer's own top-level settings", "[config]") {
    const Config config = load_clean(std::string(kBase) +
                                     "splice_mode: \"splice\";\nconnect_timeout: 7;\n"
                                     "user: \"splicer\";\n");
    CHECK(config.splice_mode == SpliceMode::splice);
    CHECK(config.connect_timeout == std::chrono::seconds{7});
    CHECK(config.user == std::optional<std::string>("splicer"));
}

TEST_CASE("stall_timeout: 120 s by default, 0 turns it off, seconds up to a day", "[config]") {
    CHECK(load_clean(kBase).stall_timeout == std::chrono::seconds{120});
    CHECK(load_clean(std::string(kBase) + "stall_timeout: 0;\n").stall_timeout ==
          std::chrono::seconds{0});
    CHECK(load_clean(std::string(kBase) + "stall_timeout: 30;\n").stall_timeout ==
          std::chrono::seconds{30});
    CHECK(splicer::config::describe(load_clean(kBase)).find("stall timeout: 120 s\n") !=
          std::string::npos);
    CHECK(splicer::config::describe(load_clean(std::string(kBase) + "stall_timeout: 0;\n"))
              .find("stall timeout: off\n") != std::string::npos);
}

TEST_CASE("max_connections: default unset, 1..1000000, errors name the line", "[config][limits]") {
    CHECK_FALSE(load_clean(kBase).max_connections.has_value());
    CHECK(load_clean(std::string(kBase) + "max_connections: 500;\n").max_connections ==
          std::optional<std::uint32_t>(500));
    CHECK(load_clean(std::string(kBase) + "max_connections: 1000000;\n").max_connections ==
          std::optional<std::uint32_t>(1000000));
    auto [text, message] = GENERATE(table<std::string, std::string>({
        {"max_connections: 0;", "out of range: expected 1..1000000"},
        {"max_connections: 1000001;", "out of range: expected 1..1000000"},
        {"max_connections: -5;", "out of range: expected 1..1000000"},
        {"max_connections: \"many\";", "wrong type"},
    }));
    CAPTURE(text);
    const LoadResult result = splicer::config::load_string(std::string(kBase) + text + "\n");
    REQUIRE_FALSE(result.ok());
    const auto errors = errors_of(result);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].setting == "max_connections");
    CHECK(errors[0].line == 3);
    CHECK_THAT(errors[0].message, Catch::StartsWith(message));
}

TEST_CASE("max_probing, max_connections_per_client and a listener's max_connections",
          "[config][limits]") {
    const Config defaults = load_clean(kBase);
    CHECK(defaults.max_probing == 1024);
    CHECK(defaults.max_connections_per_client == 1024);
    CHECK_FALSE(defaults.listeners[0].max_connections.has_value());
    const Config config = load_clean(
        "listen: ( { host: \"0.0.0.0\"; port: \"443\"; max_connections: 100; },\n"
        "          { host: \"::\"; port: \"443\"; } );\n"
        "protocols: ( { name: \"tls\"; host: \"127.0.0.1\"; port: \"5443\"; } );\n"
        "max_probing: 50;\nmax_connections_per_client: 8;\n");
    CHECK(config.listeners[0].max_connections == std::optional<std::uint32_t>(100));
    CHECK_FALSE(config.listeners[1].max_connections.has_value());
    CHECK(config.max_probing == 50);
    CHECK(config.max_connections_per_client == 8);
    CHECK_THAT(splicer::config::describe(config),
               Catch::Contains("listen 0.0.0.0:443 max_connections=100 (line 1)\n") &&
                   Catch::Contains("max probing: 50\n") &&
                   Catch::Contains("max connections per client: 8 (under pressure"));
    const LoadResult bad = splicer::config::load_string(
        "listen: ( { host: \"0.0.0.0\"; port: \"443\"; max_connections: 0; } );\n"
        "protocols: ( { name: \"tls\"; host: \"127.0.0.1\"; port: \"5443\"; } );\n"
        "max_probing: 0;\n");
    CHECK(all_diagnostics(bad) ==
          "<config>:1: error: listen.[0].max_connections: out of range: expected 1..1000000\n"
          "<config>:3: error: max_probing: out of range: expected 1..1000000\n");
}

TEST_CASE("client_ipv4_prefix_length and client_ipv6_prefix_length say what one client is",
          "[config][limits]") {
    const Config defaults = load_clean(kBase);
    CHECK(defaults.client_ipv4_prefix_length == 32);
    CHECK(defaults.client_ipv6_prefix_length == 64);
    const Config config = load_clean(std::string(kBase) +
                                     "client_ipv4_prefix_length: 24;\n"
                                     "client_ipv6_prefix_length: 56;\n");
    CHECK(config.client_ipv4_prefix_length == 24);
    CHECK(config.client_ipv6_prefix_length == 56);
    CHECK_THAT(splicer::config::describe(config),
               Catch::Contains("a client is an IPv4 /24 or an IPv6 /56"));
    const LoadResult bad = splicer::config::load_string(
        "listen: ( { host: \"0.0.0.0\"; port: \"443\"; } );\n"
        "protocols: ( { name: \"tls\"; host: \"127.0.0.1\"; port: \"5443\"; } );\n"
        "client_ipv4_prefix_length: 33;\nclient_ipv6_prefix_length: 0;\n");
    CHECK(all_diagnostics(bad) ==
          "<config>:3: error: client_ipv4_prefix_length: out of range: expected 1..32\n"
          "<config>:4: error: client_ipv6_prefix_length: out of range: expected 1..128\n");
}

TEST_CASE("log_buffer_size bounds the log lines waiting for stderr", "[config]") {
    CHECK(load_clean(kBase).log_buffer_size == 1024 * 1024);
    const Config config = load_clean(std::string(kBase) + "log_buffer_size: \"64K\";\n");
    CHECK(config.log_buffer_size == 64 * 1024);
    CHECK_THAT(splicer::config::describe(config), Catch::Contains("log buffer: 64K\n"));
    const LoadResult bad =
        splicer::config::load_string(std::string(kBase) + "log_buffer_size: \"1K\";\n");
    CHECK(all_diagnostics(bad) ==
          "<config>:3: error: log_buffer_size: out of range: expected 4K..1G\n");
}

TEST_CASE("an http listener takes max_connections as a 443 listener does", "[config][limits]") {
    const Config config = load_clean(
        std::string(kBase) +
        "http: {\n  listen: ( { host: \"0.0.0.0\"; port: \"80\"; max_connections: 300; },\n"
        "            { host: \"::\"; port: \"80\"; } );\n"
        "  routes: ( { hosts: [ \"*\" ]; backend: \"127.0.0.1:5080\"; } );\n};\n");
    REQUIRE(config.http.has_value());
    CHECK(config.http->listeners[0].max_connections == std::optional<std::uint32_t>(300));
    CHECK_FALSE(config.http->listeners[1].max_connections.has_value());
    CHECK_THAT(splicer::config::describe(config),
               Catch::Contains("http listen 0.0.0.0:80 max_connections=300 (line 4)\n") &&
                   Catch::Contains("http listen [::]:80 (line 5)\n"));
    const LoadResult bad = splicer::config::load_string(
        std::string(kBase) +
        "http: {\n  listen: ( { host: \"0.0.0.0\"; port: \"80\"; max_connections: 0; } );\n"
        "  routes: ( { hosts: [ \"*\" ]; backend: \"127.0.0.1:5080\"; } );\n};\n");
    CHECK(all_diagnostics(bad) == "<config>:4: error: http.listen.[0].max_connections: out of "
                                  "range: expected 1..1000000\n");
}

TEST_CASE("describe shows max_connections, default or configured", "[config][limits]") {
    CHECK_THAT(splicer::config::describe(load_clean(kBase)),
               Catch::Contains("max connections: 16384 (default, fitted to the fd limit)\n"));
    CHECK_THAT(splicer::config::describe(load_clean(std::string(kBase) + "max_connections: 9;\n")),
               Catch::Contains("max connections: 9\n"));
}

TEST_CASE("enum names round-trip", "[config]") {
    for (const SpliceMode mode :
         {SpliceMode::automatic, SpliceMode::sockmap, SpliceMode::splice, SpliceMode::copy}) {
        CHECK(splicer::config::splice_mode_from_string(splicer::config::to_string(mode)) == mode);
    }
    CHECK(splicer::config::to_string(SpliceMode::automatic) == "auto");
    for (const ProbeKind kind : {ProbeKind::tls, ProbeKind::xmpp, ProbeKind::ssh, ProbeKind::http,
                                 ProbeKind::openvpn, ProbeKind::regex, ProbeKind::anyprot}) {
        CHECK(splicer::config::probe_kind_from_string(splicer::config::to_string(kind)) == kind);
    }
    CHECK_FALSE(splicer::config::probe_kind_from_string("ssl").has_value());
    CHECK_FALSE(splicer::config::splice_mode_from_string("automatic").has_value());
}

TEST_CASE("format of diagnostics", "[config]") {
    using Severity = Diagnostic::Severity;
    CHECK(splicer::config::format({Severity::error, 12, "protocols.[1].port", "bad port"},
                                  "/etc/splicer/splicer.conf") ==
          "/etc/splicer/splicer.conf:12: error: protocols.[1].port: bad port");
    CHECK(splicer::config::format({Severity::notice, 3, "verbose", "ignored"}, "a.conf") ==
          "a.conf:3: notice: verbose: ignored");
    CHECK(splicer::config::format({Severity::error, 0, "listen", "missing"}, "a.conf") ==
          "a.conf: error: listen: missing");
}

TEST_CASE("config errors name the setting and the line", "[config]") {
    const auto [text, setting, line,
                fragment] = GENERATE(table<std::string, std::string, int, std::string>({
        // Top level.
        {std::string(kBase) + "bogus: 1;\n", "bogus", 3, "unknown setting"},
        {std::string(kBase) + "timeout: 0;\n", "timeout", 3, "bad timeout"},
        {std::string(kBase) + "timeout: -1.5;\n", "timeout", 3, "bad timeout"},
        {std::string(kBase) + "timeout: \"2\";\n", "timeout", 3, "wrong type"},
        {std::string(kBase) + "connect_timeout: 2.5;\n", "connect_timeout", 3,
         "wrong type: expected a whole number of seconds, found a floating-point number"},
        {std::string(kBase) + "connect_timeout: 0;\n", "connect_timeout", 3, "bad duration"},
        {std::string(kBase) + "stall_timeout: -1;\n", "stall_timeout", 3,
         "bad duration -1: expected 0 (off) or 1..86400 seconds"},
        {std::string(kBase) + "stall_timeout: 86401;\n", "stall_timeout", 3, "bad duration"},
        {std::string(kBase) + "stall_timeout: \"2m\";\n", "stall_timeout", 3, "wrong type"},
        {std::string(kBase) + "splice_mode: \"fast\";\n", "splice_mode", 3,
         "unknown splice mode \"fast\""},
        {std::string(kBase) + "user: \"\";\n", "user", 3, "empty user name"},
        {std::string(kBase) + "user: 0;\n", "user", 3, "wrong type"},
        {std::string(kBase) + "on-timeout: \"ssh\";\n", "on-timeout", 3,
         "names \"ssh\", but no rule in protocols has that name (names: \"tls\")"},
        {std::string(kBase) + "on-timeout: 1;\n", "on-timeout", 3, "wrong type"},
        // listen.
        {"protocols: ( { name: \"tls\"; host: \"127.0.0.1\"; port: 1; } );\n", "listen", 0,
         "missing required setting"},
        {"listen: ();\nprotocols: ( { name: \"tls\"; host: \"h\"; port: 1; } );\n", "listen", 1,
         "empty list"},
        {"listen: [];\nprotocols: ( { name: \"tls\"; host: \"h\"; port: 1; } );\n", "listen", 1,
         "empty list"},
        {"listen: { host: \"0.0.0.0\"; port: 443; };\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1; } );\n",
         "listen", 1, "wrong type: expected a list of groups"},
        {"listen: (\n { host: \"0.0.0.0\"; port: true; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1; } );\n",
         "listen.[0].port", 2, "wrong type: expected a port"},
        {"listen: ( { host: \"0.0.0.0\"; port: 0; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1; } );\n",
         "listen.[0].port", 1, "bad port 0"},
        {"listen: ( { host: \"0.0.0.0\"; port: \"https\"; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1; } );\n",
         "listen.[0].port", 1, "bad port \"https\""},
        {"listen: ( { host: \"0.0.0.0\"; port: 65536; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1; } );\n",
         "listen.[0].port", 1, "bad port 65536"},
        {"listen: ( { host: \"\"; port: 443; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1; } );\n",
         "listen.[0].host", 1, "empty host"},
        {"listen: ( { host: \"::zz\"; port: 443; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1; } );\n",
         "listen.[0].host", 1, "not an IPv6 address"},
        {"listen: ( { host: \"10.0.0\"; port: 443; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1; } );\n",
         "listen.[0].host", 1, "neither an IPv4 address nor a name"},
        {"listen: ( { host: \"a b\"; port: 443; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1; } );\n",
         "listen.[0].host", 1, "not allowed"},
        {"listen: (\n\n { port: 443; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1; } );\n",
         "listen.[0].host", 3, "missing required setting"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; is_udp: true; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1; } );\n",
         "listen.[0].is_udp", 1, "UDP is not supported"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; hots: \"x\"; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1; } );\n",
         "listen.[0].hots", 1, "unknown setting"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; },\n"
         "          { host: \"0.0.0.0\"; port: \"443\"; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1; } );\n",
         "listen.[1]", 2, "already listening on 0.0.0.0:443 (line 1)"},
        // protocols.
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n", "protocols", 0,
         "missing required setting"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\nprotocols: ();\n", "protocols", 2,
         "empty list"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\nprotocols: ( \"tls\" );\n",
         "protocols.[0]", 2, "wrong type: expected a group"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
         "protocols: ( { name: \"smtp\"; host: \"h\"; port: 25; } );\n",
         "protocols.[0].name", 2,
         "unknown protocol name \"smtp\" (known: tls, xmpp, ssh, http, openvpn, regex, "
         "anyprot)"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
         "protocols: ( { host: \"h\"; port: 25; } );\n",
         "protocols.[0].name", 2, "missing required setting"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
         "protocols: ( { name: \"tls\"; port: 25; } );\n",
         "protocols.[0].host", 2, "missing required setting"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; } );\n",
         "protocols.[0].port", 2, "missing required setting"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1; hostt: \"x\"; } );\n",
         "protocols.[0].hostt", 2, "unknown setting"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1; is_udp: true; } );\n",
         "protocols.[0].is_udp", 2, "UDP is not supported"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1;\n"
         "               sni_hostnames: \"chat.example.com\"; } );\n",
         "protocols.[0].sni_hostnames", 3, "wrong type: expected an array of strings"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1;\n"
         "               sni_hostnames: [ \"a.example\", \"\" ]; } );\n",
         "protocols.[0].sni_hostnames.[1]", 3, "empty name"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1;\n"
         "               sni_hostnames: [ \"chat.*.example\" ]; } );\n",
         "protocols.[0].sni_hostnames.[0]", 3, "bad wildcard"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1;\n"
         "               sni_hostnames: [ \"*\" ]; } );\n",
         "protocols.[0].sni_hostnames.[0]", 3, "leave sni_hostnames out"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
         "protocols: ( { name: \"xmpp\"; host: \"h\"; port: 1;\n"
         "               sni_hostnames: [ \"chat.example.com\" ]; } );\n",
         "protocols.[0].sni_hostnames", 3, "only allowed on tls rules (this rule is xmpp)"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
         "protocols: ( { name: \"ssh\"; host: \"h\"; port: 1; alpn_protocols: [ \"h2\" ]; } );\n",
         "protocols.[0].alpn_protocols", 2, "only allowed on tls rules"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1; alpn_protocols: [ \"\" ]; } );\n",
         "protocols.[0].alpn_protocols.[0]", 2, "bad ALPN protocol"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
         "protocols: ( { name: \"regex\"; host: \"h\"; port: 1; } );\n",
         "protocols.[0].regex_patterns", 2, "a regex rule needs regex_patterns"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
         "protocols: ( { name: \"regex\"; host: \"h\"; port: 1; regex_patterns: []; } );\n",
         "protocols.[0].regex_patterns", 2, "at least one pattern"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
         "protocols: ( { name: \"regex\"; host: \"h\"; port: 1;\n"
         "               regex_patterns: [ \"^ok\", \"(unclosed\" ]; } );\n",
         "protocols.[0].regex_patterns.[1]", 3, "bad regex \"(unclosed\""},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
         "protocols: ( { name: \"tls\"; host: \"h\"; port: 1; regex_patterns: [ \"x\" ]; } );\n",
         "protocols.[0].regex_patterns", 2, "only allowed on regex rules"},
        {"listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
         "protocols: ( { name: \"ssh\"; host: \"h\"; port: 1; probe: [ \"x\" ]; } );\n",
         "protocols.[0].probe", 2, "wrong type"},
        // http.
        {std::string(kBase) + "http: ( );\n", "http", 3, "wrong type: expected a group"},
        {std::string(kBase) + "http: {\n  routes: ( );\n};\n", "http.listen", 3,
         "missing required setting"},
        {std::string(kBase) + "http: {\n  listen: ( );\n};\n", "http.listen", 4, "empty list"},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 80; "
                              "is_udp: false; } );\n};\n",
         "http.listen.[0].is_udp", 4, "unknown setting"},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 443; } );\n};\n",
         "http.listen.[0]", 4, "already listening on 0.0.0.0:443 (line 1)"},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 80; } );\n"
                              "  max_body_size: \"20X\";\n};\n",
         "http.max_body_size", 5, "bad size \"20X\""},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 80; } );\n"
                              "  max_body_size: 0;\n};\n",
         "http.max_body_size", 5, "at least 1 byte"},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 80; } );\n"
                              "  header_timeout: 0;\n};\n",
         "http.header_timeout", 5, "bad duration 0"},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 80; } );\n"
                              "  idle_timeout: \"60\";\n};\n",
         "http.idle_timeout", 5, "wrong type"},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 80; } );\n"
                              "  keepalive: true;\n};\n",
         "http.keepalive", 5, "unknown setting"},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 80; } );\n"
                              "  routes: (\n    { backend: \"127.0.0.1:80\"; } );\n};\n",
         "http.routes.[0].hosts", 6, "missing required setting"},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 80; } );\n"
                              "  routes: (\n    { hosts: [ \"*\" ]; } );\n};\n",
         "http.routes.[0].backend", 6, "missing required setting"},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 80; } );\n"
                              "  routes: (\n    { hosts: [ ]; backend: \"h:1\"; } );\n};\n",
         "http.routes.[0].hosts", 6, "at least one host"},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 80; } );\n"
                              "  routes: (\n    { hosts: [ \"a.example:80\" ]; "
                              "backend: \"h:1\"; } );\n};\n",
         "http.routes.[0].hosts.[0]", 6, "without its port"},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 80; } );\n"
                              "  routes: (\n    { hosts: [ \"*\" ]; backend: \"::1:8080\"; } "
                              ");\n};\n",
         "http.routes.[0].backend", 6, "in brackets"},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 80; } );\n"
                              "  routes: (\n    { hosts: [ \"*\" ]; backend: \"localhost\"; } "
                              ");\n};\n",
         "http.routes.[0].backend", 6, "expected HOST:PORT"},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 80; } );\n"
                              "  routes: (\n    { hosts: [ \"*\" ]; backend: \"h:0\"; } "
                              ");\n};\n",
         "http.routes.[0].backend", 6, "bad port"},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 80; } );\n"
                              "  routes: (\n    { hosts: [ \"*\" ]; backend: \"h:1\";\n"
                              "      path_prefix: \"api\"; } );\n};\n",
         "http.routes.[0].path_prefix", 7, "starting with \"/\""},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 80; } );\n"
                              "  routes: (\n    { hosts: [ \"*\" ]; backend: \"h:1\";\n"
                              "      set_host: \"a\\r\\nX-Evil: 1\"; } );\n};\n",
         "http.routes.[0].set_host", 7, "bad Host value"},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 80; } );\n"
                              "  routes: (\n    { hosts: [ \"*\" ]; backend: \"h:1\";\n"
                              "      redirect_https: \"yes\"; } );\n};\n",
         "http.routes.[0].redirect_https", 7, "wrong type: expected a boolean"},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 80; } );\n"
                              "  routes: (\n    { hosts: [ \"*\" ]; backend: \"h:1\";\n"
                              "      max_body_size: \"1T\"; } );\n};\n",
         "http.routes.[0].max_body_size", 7, "bad size"},
        {std::string(kBase) + "http: {\n  listen: ( { host: \"0.0.0.0\"; port: 80; } );\n"
                              "  routes: (\n    { hosts: [ \"*\" ]; backend: \"h:1\";\n"
                              "      host: \"x\"; } );\n};\n",
         "http.routes.[0].host", 7, "unknown setting"},
    }));
    CAPTURE(text);
    const LoadResult result = splicer::config::load_string(text);
    CHECK_FALSE(result.ok());
    INFO(all_diagnostics(result));
    const std::vector<Diagnostic> errors = errors_of(result);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].setting == setting);
    CHECK(errors[0].line == line);
    CHECK_THAT(errors[0].message, Catch::Contains(fragment));
}

TEST_CASE("all errors are reported in one pass", "[config]") {
    const LoadResult result = splicer::config::load_string(
        "listen: ( { host: \"0.0.0.0\"; port: 0; } );\n"
        "protocols: (\n"
        "  { name: \"smtp\"; host: \"h\"; port: 25; },\n"
        "  { name: \"tls\"; host: \"h\"; port: true; }\n"
        ");\n"
        "colour: \"blue\";\n"
        "http: { listen: ( ); };\n");
    CHECK_FALSE(result.ok());
    INFO(all_diagnostics(result));
    const std::vector<Diagnostic> errors = errors_of(result);
    REQUIRE(errors.size() == 5);
    CHECK(errors[0].setting == "listen.[0].port");
    CHECK(errors[1].setting == "protocols.[0].name");
    CHECK(errors[2].setting == "protocols.[1].port");
    CHECK(errors[3].setting == "colour");
    CHECK(errors[4].setting == "http.listen");
}

TEST_CASE("sslh-only settings load with notices", "[config]") {
    const LoadResult result = splicer::config::load_string(
        "verbose: 2;\n"
        "verbose-connections: 1;\n"
        "foreground: true;\n"
        "inetd: false;\n"
        "numeric: true;\n"
        "transparent: false;\n"
        "pidfile: \"/run/sslh.pid\";\n"
        "chroot: \"/var/empty\";\n"
        "syslog_facility: \"auth\";\n"
        "logfile: \"/var/log/sslh.log\";\n"
        "udp_max_connections: 10;\n"
        "prefix: \"sslh\";\n"
        "listen: ( { host: \"0.0.0.0\"; port: \"443\"; keepalive: true; is_udp: false; } );\n"
        "protocols: (\n"
        "  { name: \"ssh\"; service: \"ssh\"; host: \"localhost\"; port: \"22\"; fork: true;\n"
        "    tfo_ok: true; transparent: true; log_level: 1; keepalive: true;\n"
        "    resolve_on_forward: true; minlength: 10; udp_timeout: 30; probe: \"builtin\"; }\n"
        ");\n"
        "on-timeout: \"ssh\";\n");
    INFO(all_diagnostics(result));
    REQUIRE(result.ok());
    CHECK(errors_of(result).empty());
    for (const std::string_view setting : {"verbose",
                                           "verbose-connections",
                                           "foreground",
                                           "inetd",
                                           "numeric",
                                           "pidfile",
                                           "chroot",
                                           "syslog_facility",
                                           "logfile",
                                           "udp_max_connections",
                                           "prefix",
                                           "listen.[0].keepalive",
                                           "protocols.[0].service",
                                           "protocols.[0].fork",
                                           "protocols.[0].tfo_ok",
                                           "protocols.[0].log_level",
                                           "protocols.[0].keepalive",
                                           "protocols.[0].resolve_on_forward",
                                           "protocols.[0].minlength",
                                           "protocols.[0].udp_timeout",
                                           "protocols.[0].probe"}) {
        CAPTURE(setting);
        const Diagnostic* diagnostic = find_diagnostic(result, setting);
        REQUIRE(diagnostic != nullptr);
        CHECK(diagnostic->severity == Diagnostic::Severity::notice);
        CHECK(diagnostic->line > 0);
        CHECK_THAT(diagnostic->message, Catch::StartsWith("sslh setting ignored"));
    }
    CHECK(find_diagnostic(result, "listen.[0].is_udp") == nullptr);
    CHECK(find_diagnostic(result, "foreground")->line == 3);
    CHECK(find_diagnostic(result, "protocols.[0].fork")->line == 15);
    REQUIRE(result.config->on_timeout_rule.has_value());
    CHECK(*result.config->on_timeout_rule == 0);
}

TEST_CASE("transparent: sslh's global and per-protocol spellings, a rule's own setting winning",
          "[config][transparent]") {
    const LoadResult result = splicer::config::load_string(
        "transparent: true;\n"
        "listen: ( { host: \"0.0.0.0\"; port: \"443\"; transparent: true; } );\n"
        "protocols: (\n"
        "  { name: \"ssh\"; host: \"127.0.0.1\"; port: \"22\"; },\n"
        "  { name: \"xmpp\"; host: \"127.0.0.1\"; port: \"5222\"; transparent: false; },\n"
        "  { name: \"tls\"; host: \"127.0.0.1\"; port: \"5443\"; transparent: true; }\n"
        ");\n");
    INFO(all_diagnostics(result));
    REQUIRE(result.ok());
    const splicer::config::Config& config = *result.config;
    CHECK(config.transparent);
    CHECK_FALSE(config.rules[0].transparent.has_value());
    CHECK(splicer::config::transparent_for(config, config.rules[0]));
    CHECK_FALSE(splicer::config::transparent_for(config, config.rules[1]));
    CHECK(splicer::config::transparent_for(config, config.rules[2]));
    CHECK(splicer::config::uses_transparent(config));
    // Neither is ignored any more; on a listener (where it means nothing) it still is.
    CHECK(find_diagnostic(result, "transparent") == nullptr);
    CHECK(find_diagnostic(result, "protocols.[1].transparent") == nullptr);
    const Diagnostic* listener = find_diagnostic(result, "listen.[0].transparent");
    REQUIRE(listener != nullptr);
    CHECK(listener->severity == Diagnostic::Severity::notice);
    const std::string described = splicer::config::describe(config);
    CHECK_THAT(described, Catch::Contains("transparent: on"));
    CHECK_THAT(described, Catch::Contains("127.0.0.1:22 transparent (line 4)"));
    CHECK_THAT(described, Catch::Contains("127.0.0.1:5222 (line 5)"));

    // Only per protocol (sslh's other spelling): that rule alone.
    const LoadResult per_rule = splicer::config::load_string(
        "listen: ( { host: \"0.0.0.0\"; port: \"443\"; } );\n"
        "protocols: ( { name: \"ssh\"; host: \"127.0.0.1\"; port: \"22\"; transparent: true; },\n"
        "             { name: \"tls\"; host: \"127.0.0.1\"; port: \"5443\"; } );\n");
    REQUIRE(per_rule.ok());
    CHECK_FALSE(per_rule.config->transparent);
    CHECK(splicer::config::transparent_for(*per_rule.config, per_rule.config->rules[0]));
    CHECK_FALSE(splicer::config::transparent_for(*per_rule.config, per_rule.config->rules[1]));
    CHECK_THAT(splicer::config::describe(*per_rule.config), Catch::Contains("transparent: off"));

    // Off everywhere: nothing needs CAP_NET_RAW.
    const LoadResult off = splicer::config::load_string(
        "transparent: false;\n"
        "listen: ( { host: \"0.0.0.0\"; port: \"443\"; } );\n"
        "protocols: ( { name: \"ssh\"; host: \"127.0.0.1\"; port: \"22\"; } );\n");
    REQUIRE(off.ok());
    CHECK_FALSE(splicer::config::uses_transparent(*off.config));

    // Port 80: per route only, and it alone makes the config need CAP_NET_RAW.
    const LoadResult http = splicer::config::load_string(
        "listen: ( { host: \"0.0.0.0\"; port: \"443\"; } );\n"
        "protocols: ( { name: \"ssh\"; host: \"127.0.0.1\"; port: \"22\"; } );\n"
        "http: { listen: ( { host: \"0.0.0.0\"; port: \"80\"; } );\n"
        "  routes: ( { hosts: [\"a.example\"]; backend: \"127.0.0.1:8080\"; transparent: true; },\n"
        "            { hosts: [\"*\"]; backend: \"127.0.0.1:8081\"; } ); };\n");
    INFO(all_diagnostics(http));
    REQUIRE(http.ok());
    CHECK(http.config->http->routes[0].transparent);
    CHECK_FALSE(http.config->http->routes[1].transparent);
    CHECK(splicer::config::uses_transparent(*http.config));
    CHECK_THAT(splicer::config::describe(*http.config),
               Catch::Contains("-> 127.0.0.1:8080 transparent (line 4)"));

    const LoadResult wrong = splicer::config::load_string(
        "transparent: \"yes\";\n"
        "listen: ( { host: \"0.0.0.0\"; port: \"443\"; } );\n"
        "protocols: ( { name: \"ssh\"; host: \"127.0.0.1\"; port: \"22\"; } );\n");
    CHECK_FALSE(wrong.ok());
    REQUIRE(find_diagnostic(wrong, "transparent") != nullptr);
    CHECK(find_diagnostic(wrong, "transparent")->severity == Diagnostic::Severity::error);
}

TEST_CASE("an ssh rule without on-timeout gets a notice about sslh's default", "[config]") {
    const LoadResult result = splicer::config::load_string(
        "listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
        "protocols: ( { name: \"tls\"; host: \"h\"; port: 1; },\n"
        "             { name: \"ssh\"; host: \"h\"; port: 22; } );\n");
    REQUIRE(result.ok());
    CHECK_FALSE(result.config->on_timeout_rule.has_value());
    REQUIRE(result.diagnostics.size() == 1);
    CHECK(result.diagnostics[0].severity == Diagnostic::Severity::notice);
    CHECK(result.diagnostics[0].setting == "on-timeout");
    CHECK_THAT(result.diagnostics[0].message, Catch::Contains("on-timeout: \"ssh\";"));
}

TEST_CASE("rules that can never be chosen get a notice", "[config]") {
    const LoadResult result = splicer::config::load_string(
        "listen: ( { host: \"0.0.0.0\"; port: 443; } );\n"
        "protocols: (\n"
        "  { name: \"tls\"; host: \"h\"; port: 1; },\n"
        "  { name: \"tls\"; host: \"h\"; port: 2; sni_hostnames: [ \"a.example\" ]; },\n"
        "  { name: \"xmpp\"; host: \"h\"; port: 3; },\n"
        "  { name: \"xmpp\"; host: \"h\"; port: 4; }\n"
        ");\n");
    REQUIRE(result.ok());
    INFO(all_diagnostics(result));
    REQUIRE(result.diagnostics.size() == 2);
    CHECK(result.diagnostics[0].setting == "protocols.[1]");
    CHECK(result.diagnostics[0].line == 4);
    CHECK_THAT(result.diagnostics[0].message, Catch::Contains("rule 0 (line 3)"));
    CHECK(result.diagnostics[1].setting == "protocols.[3]");
    // The Snikket order (ALPN rule first, then SNI) has no such notice.
    CHECK(splicer::config::load_string(kSnikketSslh).diagnostics.empty());
}

TEST_CASE("the full splicer fixture with an http section", "[config]") {
    const LoadResult result = splicer::config::load_file(fixture("splicer-full.conf"));
    INFO(all_diagnostics(result));
    REQUIRE(result.ok());
    CHECK(result.diagnostics.empty());
    const Config& config = *result.config;
    CHECK(config.user == std::optional<std::string>("nobody"));
    CHECK(config.splice_mode == SpliceMode::sockmap);
    CHECK(config.connect_timeout == std::chrono::seconds{3});
    CHECK(config.probe_timeout == std::chrono::milliseconds{1500});
    CHECK(config.on_timeout_rule == std::optional<std::size_t>(4));
    REQUIRE(config.listeners.size() == 2);
    CHECK(splicer::config::to_string(config.listeners[1].address) == "[::]:443");
    CHECK(config.listeners[1].line == 13);
    REQUIRE(config.rules.size() == 5);
    CHECK(config.rules[1].line == 19);
    CHECK(config.rules[2].sni_hostnames ==
          std::vector<std::string>{"www.example.com", "*.example.org"});
    CHECK(splicer::config::to_string(config.rules[2].backend) == "[::1]:8443");
    CHECK(config.rules[4].probe == ProbeKind::ssh);
    CHECK(config.rules[4].backend.port == 22);

    REQUIRE(config.http.has_value());
    const auto& http = *config.http;
    REQUIRE(http.listeners.size() == 2);
    CHECK(splicer::config::to_string(http.listeners[1].address) == "[::]:80");
    CHECK(http.limits.max_body_size == 20ULL * 1024 * 1024);
    CHECK(http.limits.header_timeout == std::chrono::seconds{15});
    CHECK(http.limits.idle_timeout == std::chrono::seconds{60});
    REQUIRE(http.routes.size() == 4);
    CHECK(http.routes[0].hosts.size() == 3);
    CHECK(http.routes[0].line == 33);
    CHECK(http.routes[1].path_prefix == "/upload/");
    CHECK(splicer::config::to_string(http.routes[1].backend) == "[::1]:8080");
    CHECK(http.routes[1].max_body_size == std::optional<std::uint64_t>(1ULL << 30));
    CHECK(http.routes[2].set_host == std::optional<std::string>("intranet.local"));
    CHECK(http.routes[2].redirect_https);
    CHECK_FALSE(http.routes[3].redirect_https);
    CHECK(http.routes[3].hosts == std::vector<std::string>{"*"});
    CHECK(http.routes[3].line == 39);
}

TEST_CASE("http section details", "[config]") {
    const Config config =
        load_clean(std::string(kBase) +
                   "http: {\n"
                   "  listen: ( { host: \"[::1]\"; port: 8080; } );\n"
                   "  max_body_size: 1048576;\n"
                   "  header_timeout: 5; idle_timeout: 30; backend_timeout: 20;\n"
                   "  routes: (\n"
                   "    { hosts: [ \"WWW.Example.com.\", \"*.example.net\", \"192.0.2.1\" ];\n"
                   "      backend: \"backend.local:8080\"; max_body_size: \"512k\"; }\n"
                   "  );\n"
                   "};\n");
    REQUIRE(config.http.has_value());
    CHECK(config.http->listeners[0].address.host == "::1");
    CHECK(config.http->limits.max_body_size == 1048576);
    CHECK(config.http->limits.header_timeout == std::chrono::seconds{5});
    CHECK(config.http->limits.idle_timeout == std::chrono::seconds{30});
    CHECK(config.http->limits.backend_timeout == std::chrono::seconds{20});
    REQUIRE(config.http->routes.size() == 1);
    CHECK(config.http->routes[0].hosts ==
          std::vector<std::string>{"www.example.com", "*.example.net", "192.0.2.1"});
    CHECK(config.http->routes[0].backend.host == "backend.local");
    CHECK(config.http->routes[0].max_body_size == std::optional<std::uint64_t>(512 * 1024));
    CHECK(config.http->routes[0].line == 8);

    // Routes may be empty (every request then gets 404).
    const Config no_routes = load_clean(
        std::string(kBase) + "http: { listen: ( { host: \"0.0.0.0\"; port: 80; } ); };\n");
    REQUIRE(no_routes.http.has_value());
    CHECK(no_routes.http->routes.empty());
}

TEST_CASE("load_file on a missing path", "[config]") {
    const std::string path = "/nonexistent/splicer/splicer.conf";
    const LoadResult result = splicer::config::load_file(path);
    CHECK_FALSE(result.ok());
    REQUIRE(result.diagnostics.size() == 1);
    CHECK(splicer::config::format(result.diagnostics[0], path) ==
          path + ": error: cannot read: No such file or directory");
}

TEST_CASE("load_file on a directory", "[config]") {
    const LoadResult result = splicer::config::load_file(SPLICER_FIXTURES_DIR);
    CHECK_FALSE(result.ok());
    REQUIRE(result.diagnostics.size() == 1);
    CHECK_THAT(result.diagnostics[0].message, Catch::StartsWith("cannot read: "));
}

TEST_CASE("NUL bytes and truncated files never escape as exceptions", "[config]") {
    const LoadResult nul =
        splicer::config::load_string(std::string(kBase) + std::string("\0x: 1;\n", 7));
    CHECK_FALSE(nul.ok());
    REQUIRE(nul.diagnostics.size() == 1);
    CHECK(nul.diagnostics[0].line == 3);

    // Every prefix of a real file: each either loads or reports at least one error.
    const std::string text(splicer::config::embedded_default_text());
    for (std::size_t length = 0; length <= text.size(); length += 7) {
        const LoadResult result = splicer::config::load_string(text.substr(0, length));
        CHECK((result.ok() || !errors_of(result).empty()));
    }
}

TEST_CASE("describe lists the effective configuration in order", "[config]") {
    const Config config = load_clean(kSnikketSslh);
    const std::string text = splicer::config::describe(config);
    CAPTURE(text);
    const std::vector<std::string> expected_in_order = {
        "splice mode: auto\n",
        "probe timeout: 2000 ms\n",
        "on-timeout: close\n",
        "connect timeout: 5 s\n",
        "stall timeout: 120 s\n",
        "listen 0.0.0.0:443 (line 3)\n",
        "rule 0: tls alpn=[xmpp-client] -> 127.0.0.1:5223 (line 8)\n",
        "rule 1: tls sni=[chat.example.com, groups.chat.example.com, share.chat.example.com] -> "
        "127.0.0.1:5443 (line 9)\n",
        "rule 2: xmpp -> 127.0.0.1:5222 (line 10)\n",
    };
    std::size_t position = 0;
    for (const std::string& line : expected_in_order) {
        CAPTURE(line);
        const std::size_t found = text.find(line, position);
        REQUIRE(found != std::string::npos);
        position = found + line.size();
    }
    CHECK(text.find("http") == std::string::npos);

    const LoadResult full = splicer::config::load_file(fixture("splicer-full.conf"));
    REQUIRE(full.ok());
    const std::string full_text = splicer::config::describe(*full.config);
    CAPTURE(full_text);
    CHECK_THAT(full_text, Catch::Contains("on-timeout: rule 4 (ssh)\n"));
    CHECK_THAT(full_text, Catch::Contains("user: nobody\n"));
    CHECK_THAT(full_text, Catch::Contains("listen [::]:443 (line 13)\n"));
    CHECK_THAT(full_text, Catch::Contains("http listen [::]:80 (line 28)\n"));
    CHECK_THAT(full_text, Catch::Contains("http max body size: 20M\n"));
    CHECK_THAT(full_text, Catch::Contains("http route 1: hosts=[www.example.com] path=/upload/ -> "
                                          "[::1]:8080 max_body_size=1G (line 35)\n"));
    CHECK_THAT(full_text, Catch::Contains("http route 2: hosts=[www.example.com] -> "
                                          "127.0.0.1:8080 set_host=intranet.local "
                                          "redirect_https (line 37)\n"));
    CHECK(full_text.find("http route 2") < full_text.find("http route 3"));
}

TEST_CASE("http keepalive_connections and keepalive_timeout: defaults, values and errors",
          "[config][pool]") {
    const std::string listen = "  listen: ( { host: \"0.0.0.0\"; port: 80; } );\n";
    const Config defaults = load_clean(std::string(kBase) + "http: {\n" + listen + "};\n");
    REQUIRE(defaults.http.has_value());
    CHECK(defaults.http->limits.keepalive_connections == 32);
    CHECK(defaults.http->limits.keepalive_timeout == std::chrono::seconds{30});
    CHECK_THAT(splicer::config::describe(defaults),
               Catch::Contains("http backend keepalive: 32 idle per backend, 30 s\n"));

    const Config set = load_clean(std::string(kBase) + "http: {\n" + listen +
                                  "  keepalive_connections: 0;\n  keepalive_timeout: 5;\n};\n");
    REQUIRE(set.http.has_value());
    CHECK(set.http->limits.keepalive_connections == 0);
    CHECK(set.http->limits.keepalive_timeout == std::chrono::seconds{5});

    const LoadResult bad = splicer::config::load_string(
        std::string(kBase) + "http: {\n" + listen +
        "  keepalive_connections: 1025;\n  keepalive_timeout: 0;\n};\n");
    const std::string text = all_diagnostics(bad);
    CHECK_THAT(text, Catch::Contains("<config>:5: error: http.keepalive_connections: out of range: "
                                     "expected 0..1024 (0: no backend connection reuse)\n"));
    CHECK_THAT(text, Catch::Contains("<config>:6: error: http.keepalive_timeout: bad duration 0"));
    const LoadResult wrong_type = splicer::config::load_string(
        std::string(kBase) + "http: {\n" + listen + "  keepalive_connections: \"many\";\n};\n");
    CHECK_THAT(all_diagnostics(wrong_type),
               Catch::Contains("<config>:5: error: http.keepalive_connections:"));
}

TEST_CASE("workers: default unset (one per allowed CPU), 1..1024, errors name the line",
          "[config][workers]") {
    CHECK_FALSE(load_clean(kBase).workers.has_value());
    CHECK_THAT(splicer::config::describe(load_clean(kBase)),
               Catch::Contains("workers: one per CPU splicer may run on (default)\n"));
    const Config config = load_clean(std::string(kBase) + "workers: 4;\n");
    CHECK(config.workers == std::optional<std::uint32_t>(4));
    CHECK_THAT(splicer::config::describe(config), Catch::Contains("workers: 4\n"));
    CHECK(load_clean(std::string(kBase) + "workers: 1024;\n").workers ==
          std::optional<std::uint32_t>(1024));
    auto [text, message] = GENERATE(table<std::string, std::string>({
        {"workers: 0;", "out of range 0: expected 1..1024 event loops"},
        {"workers: -2;", "out of range -2: expected 1..1024 event loops"},
        {"workers: 1025;", "out of range 1025: expected 1..1024 event loops"},
        {"workers: 100000;", "out of range 100000: expected 1..1024 event loops"},
        {"workers: \"two\";", "wrong type"},
    }));
    CAPTURE(text);
    const LoadResult result = splicer::config::load_string(std::string(kBase) + text + "\n");
    REQUIRE_FALSE(result.ok());
    const auto errors = errors_of(result);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].setting == "workers");
    CHECK(errors[0].line == 3);
    CHECK_THAT(errors[0].message, Catch::StartsWith(message));
}
