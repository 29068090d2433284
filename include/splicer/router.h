#pragma once
// The router: rules in config order, first match wins (pure logic, no I/O).

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "splicer/config.h"
#include "splicer/result.h"
#include "splicer/probe.h"
#include "splicer/tls_client_hello.h"

namespace splicer::route {

struct Decision {
    probe::Verdict verdict = probe::Verdict::need_more;
    // The chosen rule's index in Config::rules when verdict == match; none means close.
    std::optional<std::size_t> rule;
    // Set when the prefix held a complete, well-formed ClientHello (for logs: sni, alpn).
    std::optional<tls::ClientHello> hello;
    std::string reason;  // why no rule matched, or which fallback applied
    // need_more: the prefix length at which deciding again is worth it (> the prefix's
    // size, at most tls::kMaxProbeBytes). Set by the first undecided rule, the one that holds
    // the decision: a tls rule's ParseResult::needed; a regex rule still undecided past
    // kRegexBatchFrom bytes asks for a quarter more each time (each run of a pattern reads
    // the whole prefix); every other probe one byte more.
    std::size_t needed = 0;
};

// Past this many bytes an undecided regex rule is run again only once the prefix has grown
// by a quarter, so hostile trickling costs O(n) pattern runs in total instead of O(n^2).
inline constexpr std::size_t kRegexBatchFrom = 4096;

// True if `name` (as sent in SNI: any case, perhaps one trailing dot) matches `pattern`
// (lowercase, no trailing dot; exact or "*.suffix", where "*.example.com" matches any name
// ending in ".example.com" but not "example.com" itself).
bool hostname_matches(std::string_view pattern, std::string_view name);

// Lowercases and drops one trailing dot.
std::string normalize_hostname(std::string_view name);

class Router {
public:
    // Compiles regex rules; fails (with the rule's line) if a pattern does not compile.
    static Result<Router> create(const config::Config& config);

    // Decides on the bytes received so far. Rules are tried in order: a rule answering
    // need_more makes the whole decision need_more (a later rule may not overtake it),
    // the first match wins. When every rule answers no_match: the first anyprot rule, else
    // close (rule empty). Past tls::kMaxProbeBytes nothing can still need more.
    [[nodiscard]] Decision decide(std::span<const std::byte> prefix) const;

    // Decides when the probe timeout expires with `prefix` received (perhaps nothing): a
    // complete match still wins, otherwise the on-timeout rule, otherwise close.
    [[nodiscard]] Decision decide_on_timeout(std::span<const std::byte> prefix) const;

    Router(Router&&) noexcept;
    Router& operator=(Router&&) noexcept;
    ~Router();

private:
    struct Compiled;
    explicit Router(std::unique_ptr<Compiled> compiled);
    std::unique_ptr<Compiled> compiled_;
};

}  // namespace splicer::route
