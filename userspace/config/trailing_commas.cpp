// drop_trailing_commas: lets libconfig 1.5 (Debian 12) read sslh configurations that end
// lists with a comma, which libconfig accepts only from 1.7 on (DESIGN.md, "Config file").
//
// The scan knows just enough of libconfig's lexical syntax to stay out of strings ("...", with
// backslash escapes) and comments (#, //, /* */). Only commas are removed, never newlines, so
// the line numbers libconfig reports still point into the user's file.

#include <string>
#include <string_view>

#include "splicer/config.h"

namespace splicer::config {
namespace {

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Length of the comment starting at `pos`, or 0 if none starts there. An unterminated block
// comment runs to the end of the text, as libconfig would read it.
std::size_t comment_length(std::string_view text, std::size_t pos) {
    const std::string_view rest = text.substr(pos);
    if (rest.starts_with("#") || rest.starts_with("//")) {
        const std::size_t newline = rest.find('\n');
        return newline == std::string_view::npos ? rest.size() : newline;
    }
    if (rest.starts_with("/*")) {
        const std::size_t end = rest.find("*/", 2);
        return end == std::string_view::npos ? rest.size() : end + 2;
    }
    return 0;
}

// Position of the next character that is neither whitespace nor inside a comment, or npos.
std::size_t next_significant(std::string_view text, std::size_t pos) {
    while (pos < text.size()) {
        if (is_space(text[pos])) {
            ++pos;
        } else if (const std::size_t length = comment_length(text, pos); length != 0) {
            pos += length;
        } else {
            return pos;
        }
    }
    return std::string_view::npos;
}

}  // namespace

std::string drop_trailing_commas(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    // The last significant character copied, so a comma that follows an opening bracket or
    // another comma (not a trailing comma after an element) is left for libconfig to reject.
    char previous = '\0';
    std::size_t pos = 0;
    while (pos < text.size()) {
        const char c = text[pos];
        if (const std::size_t length = comment_length(text, pos); length != 0) {
            out.append(text.substr(pos, length));
            pos += length;
            continue;
        }
        if (c == '"') {
            // Copy the string through its closing quote, skipping escaped characters.
            std::size_t end = pos + 1;
            while (end < text.size() && text[end] != '"') {
                end += (text[end] == '\\' && end + 1 < text.size()) ? 2 : 1;
            }
            end = end < text.size() ? end + 1 : end;
            out.append(text.substr(pos, end - pos));
            pos = end;
            previous = '"';
            continue;
        }
        if (c == ',' && previous != '(' && previous != '[' && previous != ',') {
            const std::size_t next = next_significant(text, pos + 1);
            if (next != std::string_view::npos && (text[next] == ')' || text[next] == ']')) {
                ++pos;  // the trailing comma: dropped
                continue;
            }
        }
        out.push_back(c);
        if (!is_space(c)) {
            previous = c;
        }
        ++pos;
    }
    return out;
}

}  // namespace splicer::config
