// libFuzzer target: the whole probe chain as the daemon runs it. A Router built from the
// embedded default configuration (tls with ALPN, tls, xmpp) plus ssh, http, openvpn and an
// anchored regex rule decides on each fuzzer-chosen prefix of the stream (split_input.h),
// then on the timeout. Checks: a decision, once made, stays the same on longer prefixes
// (every probe here is prefix-monotone), and a chosen rule is always a real rule.

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "split_input.h"
#include "splicer/config.h"
#include "splicer/router.h"

namespace {

using splicer::config::ProbeKind;
using splicer::probe::Verdict;

void fail(const char* what) {
    std::fprintf(stderr, "fuzz_probe_chain: %s\n", what);
    std::abort();
}

splicer::config::Rule extra_rule(const char* name, ProbeKind probe, std::uint16_t port) {
    return {.name = name, .probe = probe, .backend = {.host = "127.0.0.1", .port = port}};
}

struct Chain {
    splicer::config::Config config;
    splicer::route::Router router;
};

Chain make_chain() {
    splicer::config::LoadResult loaded =
        splicer::config::load_string(splicer::config::embedded_default_text(), "<default>");
    if (!loaded.ok()) {
        fail("the embedded default configuration does not load");
    }
    splicer::config::Config config = *loaded.config;
    config.rules.push_back(extra_rule("ssh", ProbeKind::ssh, 22));
    config.rules.push_back(extra_rule("http", ProbeKind::http, 8080));
    config.rules.push_back(extra_rule("openvpn", ProbeKind::openvpn, 1194));
    splicer::config::Rule regex = extra_rule("regex", ProbeKind::regex, 9000);
    // Anchored, as sslh's examples are, and with nested quantifiers to exercise the bounds.
    regex.regex_patterns = {"^\\x00\\x0e\\x38", "^(?:[a-z]+ )+splicer\\r?\\n"};
    config.rules.push_back(regex);
    config.on_timeout_rule = config.rules.size() - 4;  // ssh: a server-speaks-first protocol
    splicer::Result<splicer::route::Router> router = splicer::route::Router::create(config);
    if (!router) {
        fail("the router does not build");
    }
    return {std::move(config), std::move(*router)};
}

void check_rule(const Chain& chain, const splicer::route::Decision& decision) {
    if (decision.rule && *decision.rule >= chain.config.rules.size()) {
        fail("a decision names a rule that does not exist");
    }
    if (decision.verdict != Verdict::match && decision.rule) {
        fail("a decision other than match names a rule");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const Chain chain = make_chain();
    const splicer::fuzz::SplitInput input = splicer::fuzz::split_input(data, size);
    bool decided = false;
    splicer::route::Decision first;
    for (const std::size_t length : input.prefix_lengths) {
        const splicer::route::Decision decision =
            chain.router.decide(input.stream.first(length));
        check_rule(chain, decision);
        if (!decided) {
            if (decision.verdict != Verdict::need_more) {
                decided = true;
                first = decision;
            } else if (decision.needed <= length ||
                       decision.needed > splicer::tls::kMaxProbeBytes) {
                fail("need_more with needed not past the prefix, or past kMaxProbeBytes");
            }
            continue;
        }
        if (decision.verdict != first.verdict || decision.rule != first.rule) {
            fail("a longer prefix changed the decision");
        }
    }
    const splicer::route::Decision on_timeout = chain.router.decide_on_timeout(input.stream);
    check_rule(chain, on_timeout);
    if (on_timeout.verdict == Verdict::need_more) {
        fail("the timeout decision still needs more");
    }
    return 0;
}
