// Config: sslh's `proxyprotocol: 1|2` on a `protocols` entry and on an `http.routes` entry,
// its errors (naming the setting and the line), and how `splicer check` shows it.

#include <catch2/catch.hpp>
#include <string>

#include "splicer/config.h"
#include "support/config_text.h"

using splicer::config::LoadResult;
using splicer::test::all_diagnostics;

namespace {

std::string rule_route_config(const std::string& rule_option, const std::string& route_option) {
    return splicer::test::proxy_config({.rule = rule_option, .route = route_option});
}

}  // namespace

TEST_CASE("proxyprotocol: 1 or 2 on a rule and on an http route, shown by check", "[config]") {
    const auto [rule_version, route_version] =
        GENERATE(table<int, int>({{1, 2}, {2, 1}, {2, 2}, {1, 1}}));
    const LoadResult result = splicer::config::load_string(
        rule_route_config("proxyprotocol: " + std::to_string(rule_version) + ";",
                          "proxyprotocol: " + std::to_string(route_version) + ";"));
    INFO(all_diagnostics(result));
    REQUIRE(result.ok());
    CHECK(result.diagnostics.empty());  // no notice: the setting is used, not ignored
    const auto& config = *result.config;
    CHECK(config.rules[0].proxy_protocol == rule_version);
    CHECK(config.rules[1].proxy_protocol == 0);
    CHECK(config.http->routes[0].proxy_protocol == route_version);
    const std::string text = splicer::config::describe(config);
    CAPTURE(text);
    CHECK_THAT(text, Catch::Contains("rule 0: tls -> 127.0.0.1:5443 proxyprotocol=" +
                                     std::to_string(rule_version) + " (line 3)\n"));
    CHECK_THAT(text, Catch::Contains("rule 1: xmpp -> 127.0.0.1:5222 (line 4)\n"));
    CHECK_THAT(text, Catch::Contains("http route 0: hosts=[*] -> 127.0.0.1:8080 proxyprotocol=" +
                                     std::to_string(route_version) + " (line 8)\n"));
}

TEST_CASE("proxyprotocol: other values and types are errors naming the setting and line",
          "[config]") {
    const auto [value, message] = GENERATE(table<std::string, std::string>({
        {"0", "out of range: expected 1 or 2 (the PROXY protocol version)"},
        {"3", "out of range: expected 1 or 2 (the PROXY protocol version)"},
        {"-1", "out of range: expected 1 or 2 (the PROXY protocol version)"},
        {"true", "wrong type: expected an integer, found a boolean"},
        {"\"2\"", "wrong type: expected an integer, found a string"},
        {"2.0", "wrong type: expected an integer, found a floating-point number"},
    }));
    CAPTURE(value);
    SECTION("on a protocols entry") {
        const LoadResult result =
            splicer::config::load_string(rule_route_config("proxyprotocol: " + value + ";", ""));
        INFO(all_diagnostics(result));
        REQUIRE_FALSE(result.ok());
        REQUIRE(result.diagnostics.size() == 1);
        CHECK(result.diagnostics[0].setting == "protocols.[0].proxyprotocol");
        CHECK(result.diagnostics[0].line == 3);
        CHECK(result.diagnostics[0].message == message);
    }
    SECTION("on an http route") {
        const LoadResult result =
            splicer::config::load_string(rule_route_config("", "proxyprotocol: " + value + ";"));
        INFO(all_diagnostics(result));
        REQUIRE_FALSE(result.ok());
        REQUIRE(result.diagnostics.size() == 1);
        CHECK(result.diagnostics[0].setting == "http.routes.[0].proxyprotocol");
        CHECK(result.diagnostics[0].line == 8);
        CHECK(result.diagnostics[0].message == message);
    }
}
