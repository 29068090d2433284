#pragma once
// The daemon's stderr, one logfmt line per event (`ts=... level=info event=routed conn=7 ...`),
// parsed into key/value fields so tests match fields by key, never by position.

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace splicer::test {

struct LogLine {
    std::string raw;
    std::map<std::string, std::string, std::less<>> fields;  // values unquoted and unescaped

    [[nodiscard]] std::string_view event() const { return get("event"); }
    [[nodiscard]] std::string_view level() const { return get("level"); }
    [[nodiscard]] bool has(std::string_view key) const { return fields.find(key) != fields.end(); }
    // "" when absent.
    [[nodiscard]] std::string_view get(std::string_view key) const;
    // The value as an unsigned number, when present and numeric.
    [[nodiscard]] std::optional<unsigned long long> number(std::string_view key) const;
};

// Parses one line. Lines that are not logfmt (a stray message) keep `raw` and get no fields.
LogLine parse_log_line(std::string_view line);

}  // namespace splicer::test
