#include <time.h>

#include <array>
#include <cstdio>
#include <ctime>

#include "log/line_queue.h"
#include "splicer/log.h"

namespace splicer::log {
namespace {

std::string_view level_name(Level level) {
    switch (level) {
        case Level::debug: return "debug";
        case Level::info: return "info";
        case Level::notice: return "notice";
        case Level::warning: return "warning";
        case Level::error: return "error";
    }
    return "info";
}

bool needs_quotes(std::string_view value) {
    if (value.empty()) {
        return true;
    }
    for (const char c : value) {
        if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
            return true;
        }
    }
    return false;
}

void append_value(std::string& line, std::string_view value) {
    if (!needs_quotes(value)) {
        line += value;
        return;
    }
    line += '"';
    for (const char c : value) {
        switch (c) {
            case '"': line += "\\\""; break;
            case '\\': line += "\\\\"; break;
            case '\n': line += "\\n"; break;
            case '\t': line += "\\t"; break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    std::array<char, 8> escaped{};
                    std::snprintf(escaped.data(), escaped.size(), "\\x%02x",
                                  static_cast<unsigned>(static_cast<unsigned char>(c)));
                    line += escaped.data();
                } else {
                    line += c;
                }
        }
    }
    line += '"';
}

std::string timestamp() {
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    tm utc{};
    gmtime_r(&now.tv_sec, &utc);
    std::array<char, 40> text{};
    const std::size_t n = std::strftime(text.data(), text.size(), "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(text.data() + n, text.size() - n, ".%03ldZ", now.tv_nsec / 1'000'000);
    return text.data();
}

}  // namespace

std::string format_line(Level level, std::string_view event, std::initializer_list<Field> fields) {
    std::string line = "ts=" + timestamp() + " level=";
    line += level_name(level);
    line += " event=";
    append_value(line, event);
    for (const auto& [key, value] : fields) {
        line += ' ';
        line += key;
        line += '=';
        append_value(line, value);
    }
    return line;
}

void write(Level level, std::string_view event, std::initializer_list<Field> fields) {
    std::string line = format_line(level, event, fields);
    line += '\n';
    // Into the writer thread's bounded buffer once it runs (log/line_queue.h): never blocks.
    (void)emit(std::move(line));
}

}  // namespace splicer::log
