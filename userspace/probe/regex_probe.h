#pragma once
// The regex probe: sslh's regex_patterns, compiled with PCRE2 as sslh does, matched against
// the bytes received so far. Unlike sslh it answers need_more on a partial match at the end
// of the prefix (PCRE2_PARTIAL_SOFT), so a pattern is not refused just because the bytes it
// needs have not all arrived yet. Backtracking is bounded: the bytes come from anyone.

#include <memory>
#include <string>
#include <vector>

#include "splicer/probe.h"
#include "splicer/result.h"

namespace splicer::probe {

class RegexProbe {
public:
    static Result<RegexProbe> compile(const std::vector<std::string>& patterns);

    // match if any pattern matches somewhere in `prefix`; need_more if none does but one
    // could with more bytes; no_match otherwise (also when a match limit is hit).
    [[nodiscard]] Verdict probe(Bytes prefix) const;

    RegexProbe(RegexProbe&&) noexcept;
    RegexProbe& operator=(RegexProbe&&) noexcept;
    ~RegexProbe();

private:
    struct Patterns;
    explicit RegexProbe(std::unique_ptr<Patterns> patterns);
    std::unique_ptr<Patterns> patterns_;
};

}  // namespace splicer::probe
