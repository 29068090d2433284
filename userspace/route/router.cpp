#include "splicer/router.h"

#include <algorithm>

#include "probe/regex_probe.h"

namespace splicer::route {

using probe::Verdict;

struct Router::Compiled {
    config::Config config;
    // regexes[i] holds rule i's patterns when it is a regex rule.
    std::vector<std::optional<probe::RegexProbe>> regexes;
};

Router::Router(std::unique_ptr<Compiled> compiled) : compiled_(std::move(compiled)) {}
Router::Router(Router&&) noexcept = default;
Router& Router::operator=(Router&&) noexcept = default;
Router::~Router() = default;

Result<Router> Router::create(const config::Config& config) {
    auto compiled = std::make_unique<Compiled>();
    compiled->config = config;
    for (const config::Rule& rule : config.rules) {
        if (rule.probe != config::ProbeKind::regex) {
            compiled->regexes.emplace_back();
            continue;
        }
        auto regex = probe::RegexProbe::compile(rule.regex_patterns);
        if (!regex) {
            return regex.error().with_context("rule \"" + rule.name + "\" (line " +
                                              std::to_string(rule.line) + ")");
        }
        compiled->regexes.emplace_back(std::move(regex).value());
    }
    return Router(std::move(compiled));
}

namespace {

bool sni_allowed(const config::Rule& rule, const tls::ClientHello& hello) {
    if (rule.sni_hostnames.empty()) {
        return true;
    }
    return std::any_of(rule.sni_hostnames.begin(), rule.sni_hostnames.end(),
                       [&](const std::string& pattern) {
                           return hostname_matches(pattern, hello.server_name);
                       });
}

bool alpn_allowed(const config::Rule& rule, const tls::ClientHello& hello) {
    if (rule.alpn_protocols.empty()) {
        return true;
    }
    return std::any_of(hello.alpn_protocols.begin(), hello.alpn_protocols.end(),
                       [&](const std::string& offered) {
                           return std::find(rule.alpn_protocols.begin(),
                                            rule.alpn_protocols.end(),
                                            offered) != rule.alpn_protocols.end();
                       });
}

// The ClientHello is parsed at most once per decision, and only if a tls rule asks.
class LazyHello {
public:
    explicit LazyHello(std::span<const std::byte> prefix) : prefix_(prefix) {}
    const tls::ParseResult& get() {
        if (!parsed_) {
            parsed_ = tls::parse_client_hello(prefix_);
        }
        return *parsed_;
    }
    [[nodiscard]] std::optional<tls::ClientHello> hello_if_complete() const {
        if (parsed_ && parsed_->verdict == Verdict::match) {
            return parsed_->hello;
        }
        return std::nullopt;
    }

private:
    std::span<const std::byte> prefix_;
    std::optional<tls::ParseResult> parsed_;
};

// A rule's answer, and on need_more the prefix length worth waiting for (see Decision).
struct Answer {
    Verdict verdict = Verdict::no_match;
    std::size_t needed = 0;
};

Answer evaluate(const config::Rule& rule, const std::optional<probe::RegexProbe>& regex,
                std::span<const std::byte> prefix, LazyHello& hello) {
    const std::size_t one_more = prefix.size() + 1;
    switch (rule.probe) {
        case config::ProbeKind::tls: {
            const tls::ParseResult& parsed = hello.get();
            if (parsed.verdict != Verdict::match) {
                return {parsed.verdict, parsed.needed};
            }
            return {sni_allowed(rule, parsed.hello) && alpn_allowed(rule, parsed.hello)
                        ? Verdict::match
                        : Verdict::no_match};
        }
        case config::ProbeKind::xmpp: return {probe::probe_xmpp(prefix), one_more};
        case config::ProbeKind::ssh: return {probe::probe_ssh(prefix), one_more};
        case config::ProbeKind::http: return {probe::probe_http(prefix), one_more};
        case config::ProbeKind::openvpn: return {probe::probe_openvpn(prefix), one_more};
        case config::ProbeKind::regex:
            return {regex ? regex->probe(prefix) : Verdict::no_match,
                    prefix.size() < kRegexBatchFrom ? one_more
                                                    : prefix.size() + prefix.size() / 4};
        case config::ProbeKind::anyprot: return {probe::probe_anyprot(prefix), one_more};
    }
    return {};
}

}  // namespace

Decision Router::decide(std::span<const std::byte> prefix) const {
    const auto& rules = compiled_->config.rules;
    // Past the probe buffer no rule can be given more bytes: undecided means no.
    const bool buffer_full = prefix.size() >= tls::kMaxProbeBytes;
    LazyHello hello(prefix);
    Decision decision;
    for (std::size_t i = 0; i < rules.size(); ++i) {
        const Answer answer = evaluate(rules[i], compiled_->regexes[i], prefix, hello);
        if (answer.verdict == Verdict::match) {
            decision.verdict = Verdict::match;
            decision.rule = i;
            decision.hello = hello.hello_if_complete();
            return decision;
        }
        if (answer.verdict == Verdict::need_more && !buffer_full) {
            // An earlier rule still undecided may not be overtaken by a later one; so it
            // alone says when the decision can change.
            decision.verdict = Verdict::need_more;
            decision.needed = std::clamp(answer.needed, prefix.size() + 1, tls::kMaxProbeBytes);
            return decision;
        }
    }
    decision.verdict = Verdict::no_match;
    decision.hello = hello.hello_if_complete();
    decision.reason = buffer_full ? "probe buffer full" : "no rule matched";
    return decision;
}

Decision Router::decide_on_timeout(std::span<const std::byte> prefix) const {
    const auto& rules = compiled_->config.rules;
    LazyHello hello(prefix);
    Decision decision;
    // Rules still undecided count as no match now; the first that matches wins.
    for (std::size_t i = 0; i < rules.size(); ++i) {
        if (evaluate(rules[i], compiled_->regexes[i], prefix, hello).verdict == Verdict::match) {
            decision.verdict = Verdict::match;
            decision.rule = i;
            decision.hello = hello.hello_if_complete();
            return decision;
        }
    }
    decision.hello = hello.hello_if_complete();
    if (compiled_->config.on_timeout_rule) {
        decision.verdict = Verdict::match;
        decision.rule = compiled_->config.on_timeout_rule;
        decision.reason = "on-timeout";
        return decision;
    }
    decision.verdict = Verdict::no_match;
    decision.reason = "probe timeout, no on-timeout rule";
    return decision;
}

}  // namespace splicer::route
