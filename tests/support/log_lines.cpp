#include "support/log_lines.h"

#include <cctype>
#include <charconv>

namespace splicer::test {

std::string_view LogLine::get(std::string_view key) const {
    const auto found = fields.find(key);
    return found == fields.end() ? std::string_view() : std::string_view(found->second);
}

std::optional<unsigned long long> LogLine::number(std::string_view key) const {
    const std::string_view text = get(key);
    unsigned long long value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
        return std::nullopt;
    }
    return value;
}

namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

// Reads a quoted value starting after the opening quote; returns the position after the
// closing quote (or the end of the line when it is missing).
std::size_t read_quoted(std::string_view line, std::size_t pos, std::string& value) {
    while (pos < line.size()) {
        const char c = line[pos++];
        if (c == '"') {
            return pos;
        }
        if (c != '\\' || pos >= line.size()) {
            value += c;
            continue;
        }
        const char escaped = line[pos++];
        switch (escaped) {
            case 'n':
                value += '\n';
                break;
            case 't':
                value += '\t';
                break;
            case 'r':
                value += '\r';
                break;
            case 'x':
                if (pos + 1 < line.size() && hex_value(line[pos]) >= 0 &&
                    hex_value(line[pos + 1]) >= 0) {
                    value +=
                        static_cast<char>(hex_value(line[pos]) * 16 + hex_value(line[pos + 1]));
                    pos += 2;
                } else {
                    value += 'x';
                }
                break;
            default:
                value += escaped;  // \" and \\ and anything else: the character itself
        }
    }
    return pos;
}

}  // namespace

LogLine parse_log_line(std::string_view line) {
    LogLine parsed;
    parsed.raw = std::string(line);
    std::size_t pos = 0;
    while (pos < line.size()) {
        while (pos < line.size() && line[pos] == ' ') {
            ++pos;
        }
        const std::size_t key_start = pos;
        while (pos < line.size() && line[pos] != '=' && line[pos] != ' ') {
            ++pos;
        }
        if (pos >= line.size() || line[pos] != '=' || pos == key_start) {
            // A bare word: not a key=value pair. Skip it; a line with no pairs has no fields.
            while (pos < line.size() && line[pos] != ' ') {
                ++pos;
            }
            continue;
        }
        const std::string key(line.substr(key_start, pos - key_start));
        ++pos;  // '='
        std::string value;
        if (pos < line.size() && line[pos] == '"') {
            pos = read_quoted(line, pos + 1, value);
        } else {
            const std::size_t value_start = pos;
            while (pos < line.size() && line[pos] != ' ') {
                ++pos;
            }
            value = std::string(line.substr(value_start, pos - value_start));
        }
        parsed.fields.insert_or_assign(key, std::move(value));
    }
    return parsed;
}

}  // namespace splicer::test
