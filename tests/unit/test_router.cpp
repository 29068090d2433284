// The router on real bytes: rules in config order, first match wins, SNI case-insensitive,
// ALPN any-of, undecided earlier rules never overtaken, timeouts and fallbacks.

#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include "splicer/router.h"
#include "support/client_hello.h"

using splicer::config::ProbeKind;
using splicer::config::Rule;
using splicer::probe::Verdict;
using splicer::route::Router;
using splicer::test::as_bytes;
using splicer::test::make_client_hello;

namespace {

Rule rule(std::string name, ProbeKind probe, std::uint16_t port) {
    Rule r;
    r.name = std::move(name);
    r.probe = probe;
    r.backend = {"127.0.0.1", port};
    return r;
}

// The Snikket sslh snippet, as the config loader produces it.
splicer::config::Config snikket_config() {
    splicer::config::Config config;
    config.listeners.push_back({{"0.0.0.0", 443}, 3});
    Rule alpn = rule("tls", ProbeKind::tls, 5223);
    alpn.alpn_protocols = {"xmpp-client"};
    Rule sni = rule("tls", ProbeKind::tls, 5443);
    sni.sni_hostnames = {"chat.example.com", "groups.chat.example.com", "share.chat.example.com"};
    config.rules = {alpn, sni, rule("xmpp", ProbeKind::xmpp, 5222)};
    return config;
}

Router make_router(const splicer::config::Config& config) {
    auto router = Router::create(config);
    REQUIRE(router.has_value());
    return std::move(router).value();
}

}  // namespace

TEST_CASE("hostname patterns: exact, wildcard, case and trailing dot", "[router]") {
    auto [pattern, name, expected] = GENERATE(table<std::string, std::string, bool>({
        {"chat.example.com", "chat.example.com", true},
        {"chat.example.com", "CHAT.Example.Com", true},
        {"chat.example.com", "chat.example.com.", true},
        {"chat.example.com", "chat.example.com..", false},
        {"chat.example.com", "xchat.example.com", false},
        {"chat.example.com", "", false},
        {"*.example.com", "a.example.com", true},
        {"*.example.com", "a.b.Example.com.", true},
        {"*.example.com", "example.com", false},
        {"*.example.com", ".example.com", false},
        {"*.example.com", "badexample.com", false},
        {"*", "anything.example", true},
        {"*", "", false},
    }));
    CAPTURE(pattern, name);
    CHECK(splicer::route::hostname_matches(pattern, name) == expected);
}

TEST_CASE("the Snikket rules route real ClientHellos and XMPP headers", "[router]") {
    const Router router = make_router(snikket_config());
    struct Row {
        std::string what;
        std::string bytes;
        std::optional<std::size_t> rule;
    };
    const std::vector<Row> rows = {
        {"ALPN xmpp-client wins over a listed SNI (rule order)",
         make_client_hello({.server_name = "chat.example.com", .alpn = {"xmpp-client"}}), 0},
        {"ALPN xmpp-client among others",
         make_client_hello({.server_name = "other.example", .alpn = {"h2", "xmpp-client"}}), 0},
        {"each SNI name, in any case",
         make_client_hello({.server_name = "Groups.Chat.Example.COM", .alpn = {"h2"}}), 1},
        {"share. SNI over TLS 1.2",
         make_client_hello({.server_name = "share.chat.example.com", .tls12_only = true}), 1},
        {"SNI with a trailing dot", make_client_hello({.server_name = "chat.example.com."}), 1},
        {"unknown SNI: no rule", make_client_hello({.server_name = "www.example.org"}), {}},
        {"no SNI, no ALPN: no rule", make_client_hello({}), {}},
        {"plain XMPP", "<?xml version='1.0'?><stream:stream xmlns='jabber:client'>", 2},
        {"HTTP: no rule", "GET / HTTP/1.1\r\nHost: chat.example.com\r\n\r\n", {}},
    };
    for (const Row& row : rows) {
        CAPTURE(row.what);
        const auto decision = router.decide(as_bytes(row.bytes));
        if (row.rule) {
            CHECK(decision.verdict == Verdict::match);
            CHECK(decision.rule == row.rule);
        } else {
            CHECK(decision.verdict == Verdict::no_match);
            CHECK_FALSE(decision.rule.has_value());
        }
        // A prefix is undecided, or already decided the same way (the XMPP namespace may
        // arrive before the start tag ends): never a different rule.
        for (std::size_t cut = 0; cut < row.bytes.size(); ++cut) {
            CAPTURE(cut);
            const auto partial = router.decide(as_bytes(row.bytes.substr(0, cut)));
            if (partial.verdict != Verdict::need_more) {
                REQUIRE(partial.verdict == decision.verdict);
                REQUIRE(partial.rule == decision.rule);
            }
        }
    }
}

TEST_CASE("a complete ClientHello is reported with the decision", "[router]") {
    const Router router = make_router(snikket_config());
    const auto decision = router.decide(
        as_bytes(make_client_hello({.server_name = "chat.example.com", .alpn = {"h2"}})));
    REQUIRE(decision.hello.has_value());
    CHECK(decision.hello->server_name == "chat.example.com");
    CHECK(decision.hello->alpn_protocols == std::vector<std::string>{"h2"});
}

TEST_CASE("both sni_hostnames and alpn_protocols given: both must match", "[router]") {
    splicer::config::Config config;
    Rule both = rule("tls", ProbeKind::tls, 1);
    both.sni_hostnames = {"*.example.com"};
    both.alpn_protocols = {"h2"};
    config.rules = {both, rule("anyprot", ProbeKind::anyprot, 2)};
    const Router router = make_router(config);
    auto route = [&](const splicer::test::HelloOptions& options) {
        return router.decide(as_bytes(make_client_hello(options))).rule;
    };
    CHECK(route({.server_name = "a.example.com", .alpn = {"http/1.1", "h2"}}) == 0U);
    CHECK(route({.server_name = "a.example.com", .alpn = {"http/1.1"}}) == 1U);
    CHECK(route({.server_name = "a.example.org", .alpn = {"h2"}}) == 1U);
    CHECK(route({.alpn = {"h2"}}) == 1U);
}

TEST_CASE("an undecided earlier rule is never overtaken by a later one", "[router]") {
    splicer::config::Config config;
    config.rules = {rule("ssh", ProbeKind::ssh, 22), rule("anyprot", ProbeKind::anyprot, 80)};
    const Router router = make_router(config);
    CHECK(router.decide(as_bytes("SS")).verdict == Verdict::need_more);
    CHECK(router.decide(as_bytes("SSH-2.0-x\r\n")).rule == 0U);
    // anyprot catches what the earlier rules refuse.
    CHECK(router.decide(as_bytes("SSX")).rule == 1U);
    CHECK(router.decide(as_bytes("")).verdict == Verdict::need_more);
}

TEST_CASE("probe timeout: a match wins, else on-timeout, else close", "[router]") {
    splicer::config::Config config = snikket_config();
    config.rules.push_back(rule("ssh", ProbeKind::ssh, 22));
    SECTION("on-timeout names the ssh rule: a silent client goes there") {
        config.on_timeout_rule = 3;
        const Router router = make_router(config);
        const auto silent = router.decide_on_timeout({});
        CHECK(silent.verdict == Verdict::match);
        CHECK(silent.rule == 3U);
        CHECK(silent.reason == "on-timeout");
        // A partial hello is not a match: on-timeout too.
        const std::string hello = make_client_hello({.server_name = "chat.example.com"});
        CHECK(router.decide_on_timeout(as_bytes(hello.substr(0, 100))).rule == 3U);
        // A complete one still routes by its SNI.
        CHECK(router.decide_on_timeout(as_bytes(hello)).rule == 1U);
    }
    SECTION("no on-timeout: close") {
        const Router router = make_router(config);
        const auto silent = router.decide_on_timeout({});
        CHECK(silent.verdict == Verdict::no_match);
        CHECK_FALSE(silent.rule.has_value());
    }
}

TEST_CASE("regex rules: PCRE2 patterns, partial matches wait for more", "[router][regex]") {
    splicer::config::Config config;
    Rule regex = rule("regex", ProbeKind::regex, 9);
    regex.regex_patterns = {"^hello [a-z]+\\n", "^\\x00\\x01"};
    config.rules = {regex};
    const Router router = make_router(config);
    CHECK(router.decide(as_bytes("hel")).verdict == Verdict::need_more);
    CHECK(router.decide(as_bytes("hello world\n")).rule == 0U);
    CHECK(router.decide(as_bytes("help")).verdict == Verdict::no_match);
    CHECK(router.decide(as_bytes(std::string("\x00\x01zz", 4))).rule == 0U);
}

TEST_CASE("regex backtracking on hostile bytes is bounded", "[router][regex]") {
    splicer::config::Config config;
    Rule regex = rule("regex", ProbeKind::regex, 9);
    regex.regex_patterns = {"^(a+)+$"};
    config.rules = {regex};
    const Router router = make_router(config);
    const auto start = std::chrono::steady_clock::now();
    const auto decision = router.decide(as_bytes(std::string(40, 'a') + "!"));
    const auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(decision.verdict == Verdict::no_match);
    // Unbounded, this pattern takes 2^40 steps; bounded it is over in far less than a second.
    CHECK(elapsed < std::chrono::seconds(1));
}

TEST_CASE("a regex that does not compile is refused with its rule's line", "[router][regex]") {
    splicer::config::Config config;
    Rule regex = rule("regex", ProbeKind::regex, 9);
    regex.regex_patterns = {"(unclosed"};
    regex.line = 12;
    config.rules = {regex};
    auto router = Router::create(config);
    REQUIRE_FALSE(router.has_value());
    CHECK_THAT(router.error().message, Catch::Contains("line 12") && Catch::Contains("(unclosed"));
}

TEST_CASE("past the probe buffer nothing is undecided", "[router]") {
    splicer::config::Config config;
    config.rules = {rule("tls", ProbeKind::tls, 1)};
    const Router router = make_router(config);
    // A handshake record header announcing more than we will ever buffer, then padding.
    std::string huge("\x16\x03\x01\x40\x00\x01\x00\xf0\x00", 9);
    huge.resize(splicer::tls::kMaxProbeBytes, '\0');
    CHECK(router.decide(as_bytes(huge)).verdict == Verdict::no_match);
}

TEST_CASE("need_more says how many bytes to wait for: the hello's end, or a quarter more for "
          "a long regex",
          "[router]") {
    const Router snikket = make_router(snikket_config());
    const std::string hello =
        make_client_hello({.server_name = "chat.example.com", .padding_extension_bytes = 20000});
    const auto first = snikket.decide(as_bytes(hello.substr(0, 500)));
    REQUIRE(first.verdict == Verdict::need_more);
    CHECK(first.needed > 500U);
    CHECK(first.needed <= hello.size());
    CHECK(snikket.decide(as_bytes(hello.substr(0, 2))).needed == 3U);

    splicer::config::Config config;
    Rule regex = rule("regex", ProbeKind::regex, 9);
    regex.regex_patterns = {"^a+b"};
    config.rules = {regex};
    const Router router = make_router(config);
    CHECK(router.decide(as_bytes(std::string(100, 'a'))).needed == 101U);
    const std::size_t long_prefix = splicer::route::kRegexBatchFrom * 2;
    CHECK(router.decide(as_bytes(std::string(long_prefix, 'a'))).needed ==
          long_prefix + long_prefix / 4);
    // Never past the probe buffer, where an undecided rule becomes a no.
    const std::size_t near_full = splicer::tls::kMaxProbeBytes - 10;
    CHECK(router.decide(as_bytes(std::string(near_full, 'a'))).needed ==
          splicer::tls::kMaxProbeBytes);
}
