// Config: `proxyprotocol: true` and `trusted_proxies` on a `listen` entry and on an
// `http.listen` entry (accepting the PROXY protocol from a balancer), their errors (naming
// the setting and the line), how `splicer check` shows them, and the CIDR matching.

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <catch2/catch.hpp>
#include <string>

#include "splicer/config.h"
#include "support/config_text.h"

using splicer::config::LoadResult;
using splicer::test::all_diagnostics;

namespace {

std::string config_with(const std::string& listen_option, const std::string& http_option) {
    return splicer::test::proxy_config({.listen = listen_option, .http_listen = http_option});
}

bool contains(const std::string& network, const std::string& ip) {
    const auto parsed = splicer::config::parse_network(network);
    REQUIRE(parsed);
    std::array<std::uint8_t, 16> bytes{};
    const int family = ip.find(':') == std::string::npos ? AF_INET : AF_INET6;
    REQUIRE(::inet_pton(family, ip.c_str(), bytes.data()) == 1);
    return splicer::config::network_contains(*parsed, family, bytes.data());
}

}  // namespace

TEST_CASE("proxyprotocol: true and trusted_proxies on listen and http.listen, shown by check",
          "[config]") {
    const LoadResult result = splicer::config::load_string(config_with(
        "proxyprotocol: true; trusted_proxies: [ \"198.18.0.0/15\", \"::1/128\", \"198.19.2.3\" ];",
        "proxyprotocol: true;"));
    INFO(all_diagnostics(result));
    REQUIRE(result.ok());
    CHECK(result.diagnostics.empty());
    const auto& config = *result.config;
    REQUIRE(config.listeners[0].proxy_protocol);
    REQUIRE(config.listeners[0].trusted_proxies.size() == 3);
    CHECK(config.listeners[0].trusted_proxies[2].prefix_length == 32);
    REQUIRE(config.http->listeners[0].proxy_protocol);
    CHECK(config.http->listeners[0].trusted_proxies.empty());
    const std::string text = splicer::config::describe(config);
    CAPTURE(text);
    CHECK_THAT(text, Catch::Contains("listen 0.0.0.0:443 proxyprotocol "
                                     "trusted_proxies=198.18.0.0/15,::1/128,198.19.2.3 (line 1)"));
    CHECK_THAT(text, Catch::Contains("http listen 0.0.0.0:80 proxyprotocol trusted_proxies=any"));

    const LoadResult plain = splicer::config::load_string(config_with("", "proxyprotocol: false;"));
    REQUIRE(plain.ok());
    CHECK_FALSE(plain.config->listeners[0].proxy_protocol);
    CHECK_FALSE(plain.config->http->listeners[0].proxy_protocol);
}

TEST_CASE("trusted_proxies: bad entries are errors naming the setting and line", "[config]") {
    const auto [option, expected] = GENERATE(table<std::string, std::string>({
        {"proxyprotocol: true; trusted_proxies: [ \"198.18.0.0/33\" ];",
         "<config>:1: error: listen.[0].trusted_proxies.[0]: not a network: \"198.18.0.0/33\""},
        {"proxyprotocol: true; trusted_proxies: [ \"198.18.0.1/15\" ];",
         "<config>:1: error: listen.[0].trusted_proxies.[0]: not a network: \"198.18.0.1/15\""},
        {"proxyprotocol: true; trusted_proxies: [ \"::1/129\" ];",
         "<config>:1: error: listen.[0].trusted_proxies.[0]: not a network"},
        {"proxyprotocol: true; trusted_proxies: [ \"example.com\" ];",
         "<config>:1: error: listen.[0].trusted_proxies.[0]: not a network"},
        {"proxyprotocol: true; trusted_proxies: [ \"198.18.0.0/\" ];",
         "<config>:1: error: listen.[0].trusted_proxies.[0]: not a network"},
        {"proxyprotocol: true; trusted_proxies: \"198.18.0.0/15\";",
         "<config>:1: error: listen.[0].trusted_proxies: "},
        {"trusted_proxies: [ \"198.18.0.0/15\" ];",
         "<config>:1: error: listen.[0].trusted_proxies: trusted_proxies needs proxyprotocol: "
         "true"},
        {"proxyprotocol: 2;", "<config>:1: error: listen.[0].proxyprotocol: "},
    }));
    CAPTURE(option);
    const LoadResult result = splicer::config::load_string(config_with(option, ""));
    const std::string text = all_diagnostics(result);
    CAPTURE(text);
    REQUIRE_FALSE(result.ok());
    CHECK_THAT(text, Catch::Contains(expected));
}

TEST_CASE("trusted_proxies networks match by prefix, IPv4-mapped as IPv4", "[config]") {
    CHECK(contains("198.18.0.0/15", "198.19.255.255"));
    CHECK_FALSE(contains("198.18.0.0/15", "198.20.0.0"));
    CHECK(contains("198.19.2.3", "198.19.2.3"));
    CHECK_FALSE(contains("198.19.2.3", "198.19.2.4"));
    CHECK(contains("0.0.0.0/0", "203.0.113.9"));
    CHECK(contains("::1/128", "::1"));
    CHECK_FALSE(contains("::1/128", "::2"));
    CHECK(contains("2001:db8::/33", "2001:db8:7fff::1"));
    CHECK_FALSE(contains("2001:db8::/33", "2001:db8:8000::1"));
    CHECK(contains("198.18.0.0/15", "::ffff:198.18.0.1"));
    CHECK_FALSE(contains("::/0", "127.0.0.1"));
}
