#include "probe/regex_probe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>

namespace splicer::probe {
namespace {

// Bounds on one match attempt, so hostile bytes cannot make a pattern backtrack for long.
constexpr std::uint32_t kMatchLimit = 100'000;
constexpr std::uint32_t kDepthLimit = 1'000;

struct CodeDeleter {
    void operator()(pcre2_code* code) const { pcre2_code_free(code); }
};
struct MatchContextDeleter {
    void operator()(pcre2_match_context* context) const { pcre2_match_context_free(context); }
};
struct MatchDataDeleter {
    void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};

}  // namespace

struct RegexProbe::Patterns {
    std::vector<std::unique_ptr<pcre2_code, CodeDeleter>> codes;
    std::unique_ptr<pcre2_match_context, MatchContextDeleter> context;
};

RegexProbe::RegexProbe(std::unique_ptr<Patterns> patterns) : patterns_(std::move(patterns)) {}
RegexProbe::RegexProbe(RegexProbe&&) noexcept = default;
RegexProbe& RegexProbe::operator=(RegexProbe&&) noexcept = default;
RegexProbe::~RegexProbe() = default;

Result<RegexProbe> RegexProbe::compile(const std::vector<std::string>& patterns) {
    auto compiled = std::make_unique<Patterns>();
    compiled->context.reset(pcre2_match_context_create(nullptr));
    if (!compiled->context) {
        return Error{"out of memory creating a PCRE2 match context"};
    }
    pcre2_set_match_limit(compiled->context.get(), kMatchLimit);
    pcre2_set_depth_limit(compiled->context.get(), kDepthLimit);
    for (const std::string& pattern : patterns) {
        int error_code = 0;
        PCRE2_SIZE error_offset = 0;
        std::unique_ptr<pcre2_code, CodeDeleter> code(
            pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), 0,
                          &error_code, &error_offset, nullptr));
        if (!code) {
            std::array<PCRE2_UCHAR, 256> message{};
            pcre2_get_error_message(error_code, message.data(), message.size());
            return Error{"regex \"" + pattern + "\" at offset " + std::to_string(error_offset) +
                         ": " + reinterpret_cast<const char*>(message.data())};
        }
        compiled->codes.push_back(std::move(code));
    }
    return RegexProbe(std::move(compiled));
}

Verdict RegexProbe::probe(Bytes prefix) const {
    if (prefix.empty()) {
        return Verdict::need_more;  // nothing to match yet (PCRE2 reports no partial here)
    }
    bool partial = false;
    for (const auto& code : patterns_->codes) {
        std::unique_ptr<pcre2_match_data, MatchDataDeleter> data(
            pcre2_match_data_create_from_pattern(code.get(), nullptr));
        if (!data) {
            return Verdict::no_match;
        }
        const int rc = pcre2_match(code.get(), reinterpret_cast<PCRE2_SPTR>(prefix.data()),
                                   prefix.size(), 0, PCRE2_PARTIAL_SOFT, data.get(),
                                   patterns_->context.get());
        if (rc >= 0) {
            return Verdict::match;
        }
        if (rc == PCRE2_ERROR_PARTIAL) {
            partial = true;
        }
        // PCRE2_ERROR_NOMATCH, or a limit hit: this pattern does not match.
    }
    return partial ? Verdict::need_more : Verdict::no_match;
}

}  // namespace splicer::probe
