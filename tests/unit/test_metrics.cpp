// The metrics families (Prometheus text and JSON from one list), the per-rule series across
// reloads, the endpoint's answers to request heads, and the `metrics` config group.
#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "metrics/exposition.h"
#include "metrics/metrics_server.h"
#include "metrics/rule_series.h"
#include "splicer/config.h"
#include "support/command.h"

using splicer::DaemonCounters;
using splicer::PlaneLabel;
using splicer::config::LoadResult;
using splicer::metrics::RuleSeriesTable;

namespace {

constexpr std::string_view kMetricsBase =
    "listen: ( { host: \"0.0.0.0\"; port: \"443\"; } );\n"
    "protocols: ( { name: \"tls\"; host: \"127.0.0.1\"; port: \"5443\"; } );\n";

splicer::config::Config load(std::string_view text) {
    const LoadResult result = splicer::config::load_string(text);
    REQUIRE(result.ok());
    return *result.config;
}

// Three rules named as written; the second shares the first's name and probe.
splicer::config::Config rules(std::string_view protocols) {
    return load("listen: ( { host: \"0.0.0.0\"; port: \"443\"; } );\nprotocols: (" +
                std::string(protocols) + ");\n");
}

std::string text_of(const DaemonCounters& counters) {
    return splicer::metrics::prometheus_text(splicer::metrics::families(counters, "9.9"));
}

}  // namespace

TEST_CASE("metrics text: every family typed, rule names escaped, bytes per plane", "[metrics]") {
    auto counters = std::make_unique<DaemonCounters>();
    counters->accepted = 7;
    counters->refused = 5;
    counters->refused_probing = 2;
    counters->bytes[static_cast<std::size_t>(PlaneLabel::splice)][0] = 1234;
    counters->bytes[static_cast<std::size_t>(PlaneLabel::http)][1] = 99;
    counters->http_responses[404 - splicer::kFirstHttpStatus] = 3;
    counters->plane = static_cast<__u32>(PlaneLabel::splice);
    RuleSeriesTable table;
    table.bind(rules(R"({ name: "tls"; host: "127.0.0.1"; port: "5443"; })"));
    table.count_routed(table.for_rule(0), PlaneLabel::splice);
    table.count_backend_failure(table.for_rule(0));
    table.copy_to(*counters);
    // A label value with every character the text format escapes (rule labels come from
    // config text: a host name could bring them some day).
    splicer::metrics::copy_label(counters->rule_series[1].rule, splicer::kRuleNameBytes,
                                 "we\"ird\\na\nme");
    splicer::metrics::copy_label(counters->rule_series[1].protocol, splicer::kProtocolNameBytes,
                                 "tls");
    counters->rule_series[1].routed[static_cast<std::size_t>(PlaneLabel::splice)] = 1;
    counters->rule_series[1].backend_failures = 1;
    counters->rule_series_count = 2;

    const std::string text = text_of(*counters);
    CAPTURE(text);
    for (const char* family :
         {"splicer_connections_accepted_total", "splicer_connections_refused_total",
          "splicer_connections_routed_total", "splicer_backend_failures_total",
          "splicer_bytes_total", "splicer_http_requests_total", "splicer_reloads_total",
          "splicer_sockmap_fallbacks_total", "splicer_probe_timeouts_total"}) {
        CHECK_THAT(text, Catch::Contains(std::string("# TYPE ") + family + " counter\n"));
    }
    CHECK_THAT(text, Catch::Contains("# TYPE splicer_connections_active gauge\n"));
    CHECK_THAT(text, Catch::Contains("\nsplicer_connections_accepted_total 7\n"));
    CHECK_THAT(text,
               Catch::Contains("splicer_connections_refused_total{limit=\"max_probing\"} 2\n"));
    CHECK_THAT(text,
               Catch::Contains("splicer_connections_refused_total{limit=\"max_connections\"} 3\n"));
    CHECK_THAT(text, Catch::Contains("splicer_connections_routed_total{rule=\"tls -> "
                                     "127.0.0.1:5443\",protocol=\"tls\",plane=\"splice\"} 1\n"));
    CHECK_THAT(text, Catch::Contains("splicer_connections_routed_total{rule=\"we\\\"ird\\\\na"
                                     "\\nme\",protocol=\"tls\",plane=\"splice\"} 1\n"));
    CHECK_THAT(text, Catch::Contains(
                         "splicer_backend_failures_total{rule=\"tls -> 127.0.0.1:5443\"} 1\n"));
    CHECK_THAT(
        text, Catch::Contains("splicer_backend_failures_total{rule=\"we\\\"ird\\\\na\\nme\"} 1\n"));
    CHECK_THAT(text,
               Catch::Contains(
                   "splicer_bytes_total{direction=\"client_to_backend\",plane=\"splice\"} 1234\n"));
    CHECK_THAT(text,
               Catch::Contains(
                   "splicer_bytes_total{direction=\"backend_to_client\",plane=\"http\"} 99\n"));
    CHECK_THAT(text,
               Catch::Contains(
                   "splicer_bytes_total{direction=\"client_to_backend\",plane=\"sockmap\"} 0\n"));
    CHECK_THAT(text, Catch::Contains("splicer_http_requests_total{code=\"404\"} 3\n"));
    CHECK_THAT(text, Catch::Contains("splicer_build_info{version=\"9.9\",plane=\"splice\"} 1\n"));
    CHECK(splicer::metrics::escape_label_value("a\nb") == "a\\nb");
    CHECK(splicer::metrics::escape_json("a\"\\\n\x01") == "a\\\"\\\\\\u000a\\u0001");
}

TEST_CASE("metrics JSON carries the same families and values as the text", "[metrics]") {
    auto counters = std::make_unique<DaemonCounters>();
    counters->accepted = 4;
    counters->bytes[static_cast<std::size_t>(PlaneLabel::copy)][1] = 5555;
    const auto families = splicer::metrics::families(*counters, "9.9");
    const std::string json = splicer::metrics::json_text(families, "null");
    CAPTURE(json);
    CHECK_THAT(json, Catch::Contains("\"splicer_connections_accepted_total\": 4"));
    CHECK_THAT(json,
               Catch::Contains(
                   "{\"direction\": \"backend_to_client\", \"plane\": \"copy\", \"value\": 5555}"));
    CHECK_THAT(json, Catch::Contains("\"kernel\": null"));
    for (const auto& family : families) {
        CHECK_THAT(json, Catch::Contains("\"" + std::string(family.name) + "\": "));
    }
}

TEST_CASE("rule series: a reload keeps every series, renumbers rules, never lowers a count",
          "[metrics]") {
    RuleSeriesTable table;
    const auto before =
        rules(R"({ name: "tls"; host: "127.0.0.1"; port: "1"; sni_hostnames: ["a"]; },
        { name: "tls"; host: "127.0.0.1"; port: "1"; sni_hostnames: ["b"]; },
        { name: "xmpp"; host: "127.0.0.1"; port: "3"; })");
    table.bind(before);
    CHECK(table.for_rule(0) == table.for_rule(1));  // same name and backend: one series
    const std::uint32_t tls = table.for_rule(0);
    const std::uint32_t xmpp = table.for_rule(2);
    table.count_routed(tls, PlaneLabel::sockmap);
    table.count_routed(tls, PlaneLabel::sockmap);
    table.count_routed(xmpp, PlaneLabel::sockmap);
    // The reload drops "tls", moves "xmpp" to rule 0 and adds "ssh".
    table.bind(rules(R"({ name: "xmpp"; host: "127.0.0.1"; port: "3"; },
        { name: "ssh"; host: "127.0.0.1"; port: "4"; })"));
    CHECK(table.size() == 3);
    CHECK(table.for_rule(0) == xmpp);
    table.count_routed(table.for_rule(0), PlaneLabel::sockmap);
    table.count_backend_failure(tls);  // a connect that began before the reload
    auto counters = std::make_unique<DaemonCounters>();
    table.copy_to(*counters);
    REQUIRE(counters->rule_series_count == 3);
    CHECK(std::string(counters->rule_series[tls].rule) == "tls -> 127.0.0.1:1");
    CHECK(std::string(counters->rule_series[tls].protocol) == "tls");
    CHECK(counters->rule_series[tls].routed[0] == 2);
    CHECK(counters->rule_series[tls].backend_failures == 1);
    CHECK(counters->rule_series[xmpp].routed[0] == 2);
    CHECK(std::string(counters->rule_series[table.for_rule(1)].rule) == "ssh -> 127.0.0.1:4");
}

TEST_CASE("rule series: bounded, names past the bound counted as _other, long names cut",
          "[metrics]") {
    RuleSeriesTable table;
    std::string many;
    for (std::size_t i = 0; i < splicer::kMaxRuleSeries + 10; ++i) {
        many +=
            (i > 0 ? ",\n" : "") +
            std::string("{ name: \"tls\"; host: \"127.0.0.1\"; sni_hostnames: [\"a\"]; port: \"") +
            std::to_string(1000 + i) + "\"; }";
    }
    table.bind(rules(many));
    CHECK(table.size() == splicer::kMaxRuleSeries);
    const std::uint32_t last = table.for_rule(splicer::kMaxRuleSeries + 9);
    CHECK(last == splicer::kMaxRuleSeries - 1);
    CHECK(table.for_rule(splicer::kMaxRuleSeries) == last);
    auto counters = std::make_unique<DaemonCounters>();
    table.copy_to(*counters);
    CHECK(std::string(counters->rule_series[last].rule) == "_other");

    char field[8];
    splicer::metrics::copy_label(field, sizeof(field), "abcd\xc3\xa9\xc3\xa9");  // é é
    CHECK(std::string(field) == "abcd\xc3\xa9");  // 7 bytes would split the second é
    splicer::metrics::copy_label(field, sizeof(field), "ab");
    CHECK(std::string(field) == "ab");
}

TEST_CASE("metrics endpoint: GET /metrics gets the text, anything else a short error",
          "[metrics]") {
    auto counters = std::make_unique<DaemonCounters>();
    counters->accepted = 42;
    using splicer::metrics::MetricsServer;
    const std::string ok =
        MetricsServer::answer("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", *counters, "9.9");
    CHECK_THAT(ok, Catch::StartsWith("HTTP/1.1 200 OK\r\n"));
    CHECK_THAT(ok, Catch::Contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    CHECK_THAT(ok, Catch::Contains("Connection: close\r\n"));
    CHECK_THAT(ok, Catch::Contains("\nsplicer_connections_accepted_total 42\n"));
    const std::size_t body = ok.find("\r\n\r\n") + 4;
    CHECK_THAT(ok, Catch::Contains("Content-Length: " + std::to_string(ok.size() - body) + "\r\n"));
    const std::string head =
        MetricsServer::answer("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n", *counters, "9.9");
    CHECK_THAT(head, Catch::StartsWith("HTTP/1.1 200 OK\r\n"));
    CHECK_THAT(head, Catch::EndsWith("\r\n\r\n"));
    CHECK_THAT(MetricsServer::answer("POST /metrics HTTP/1.1\r\n\r\n", *counters, "9.9"),
               Catch::StartsWith("HTTP/1.1 405 "));
    CHECK_THAT(MetricsServer::answer("GET / HTTP/1.1\r\n\r\n", *counters, "9.9"),
               Catch::StartsWith("HTTP/1.1 404 "));
    CHECK_THAT(MetricsServer::answer("\x16\x03\x01 hello\r\n\r\n", *counters, "9.9"),
               Catch::StartsWith("HTTP/1.1 400 "));
}

TEST_CASE("metrics config: off by default, host and port, errors name setting and line",
          "[metrics][config]") {
    CHECK_FALSE(load(kMetricsBase).metrics.has_value());
    const auto config =
        load(std::string(kMetricsBase) + "metrics: { host: \"127.0.0.1\"; port: 9123; };\n");
    REQUIRE(config.metrics.has_value());
    CHECK(config.metrics->address.host == "127.0.0.1");
    CHECK(config.metrics->address.port == 9123);
    CHECK(config.metrics->line == 3);
    CHECK_THAT(splicer::config::describe(config),
               Catch::Contains("metrics listen 127.0.0.1:9123/metrics (line 3)"));
    CHECK_THAT(splicer::config::describe(load(kMetricsBase)), Catch::Contains("metrics: off"));

    auto [text, setting, message] = GENERATE(table<std::string, std::string, std::string>({
        {"metrics: { host: \"127.0.0.1\"; port: 70000; };", "metrics.port", "1..65535"},
        {"metrics: { host: \"127.0.0.1\"; };", "metrics.port", "missing"},
        {"metrics: { host: \"127.0.0.1\"; port: 1; path: \"/x\"; };", "metrics.path", "unknown"},
        {"metrics: 9100;", "metrics", "wrong type"},
        {"metrics: { host: \"0.0.0.0\"; port: \"443\"; };", "metrics", "already listening"},
    }));
    CAPTURE(text);
    const LoadResult result =
        splicer::config::load_string(std::string(kMetricsBase) + "\n" + text + "\n");
    REQUIRE_FALSE(result.ok());
    bool found = false;
    for (const auto& diagnostic : result.diagnostics) {
        CAPTURE(diagnostic.setting, diagnostic.message);
        if (diagnostic.setting == setting) {
            found = true;
            CHECK(diagnostic.line == 4);
            CHECK_THAT(diagnostic.message, Catch::Contains(message, Catch::CaseSensitive::No));
        }
    }
    CHECK(found);
    // A host others can reach is allowed, with a notice.
    const LoadResult open = splicer::config::load_string(
        std::string(kMetricsBase) + "metrics: { host: \"0.0.0.0\"; port: 9123; };\n");
    REQUIRE(open.ok());
    REQUIRE(open.diagnostics.size() == 1);
    CHECK(open.diagnostics[0].setting == "metrics.host");
}

TEST_CASE("splicer stats takes --json, other commands do not", "[metrics][cli]") {
    const std::string splicer = SPLICER_BINARY;
    CHECK_THAT(splicer::test::run_command(splicer + " --help").output,
               Catch::Contains("splicer stats [--pin-dir DIR] [--json]"));
    CHECK(splicer::test::run_command(splicer + " run --json").exit_code == 2);
    // No daemon on that pin dir: a clean refusal, not a parse error.
    CHECK(splicer::test::run_command(splicer + " stats --json --pin-dir /nonexistent-splicer")
              .exit_code == 1);
}

TEST_CASE("metrics text: PROXY headers rejected on a proxyprotocol listener, by reason",
          "[metrics]") {
    auto counters = std::make_unique<DaemonCounters>();
    counters->proxy_header_rejected[static_cast<std::size_t>(splicer::ProxyRejection::missing)] = 4;
    counters->proxy_header_rejected[static_cast<std::size_t>(splicer::ProxyRejection::timeout)] = 1;
    const std::string text = text_of(*counters);
    CAPTURE(text);
    CHECK_THAT(text, Catch::Contains("# TYPE splicer_proxy_header_rejected_total counter\n"));
    CHECK_THAT(text,
               Catch::Contains("splicer_proxy_header_rejected_total{reason=\"missing\"} 4\n"));
    CHECK_THAT(text,
               Catch::Contains("splicer_proxy_header_rejected_total{reason=\"malformed\"} 0\n"));
    CHECK_THAT(text,
               Catch::Contains("splicer_proxy_header_rejected_total{reason=\"untrusted\"} 0\n"));
    CHECK_THAT(text,
               Catch::Contains("splicer_proxy_header_rejected_total{reason=\"timeout\"} 1\n"));
}
