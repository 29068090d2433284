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

// Appends the UTC time, e.g. 2026-12-05T07:34:47.123Z. The date and time of day change once
// a second: each thread formats them then and keeps the text, since gmtime_r, strftime and
// snprintf cost more than the rest of a line, and a busy daemon logs a line per request.
void append_timestamp(std::string& line) {
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    thread_local time_t formatted_second = -1;
    thread_local std::array<char, 40> second_text{};
    thread_local std::size_t second_length = 0;
    if (now.tv_sec != formatted_second) {
        tm utc{};
        gmtime_r(&now.tv_sec, &utc);
        second_length =
            std::strftime(second_text.data(), second_text.size(), "%Y-%m-%dT%H:%M:%S", &utc);
        formatted_second = now.tv_sec;
    }
    line.append(second_text.data(), second_length);
    const auto millis = static_cast<int>(now.tv_nsec / 1'000'000);  // 0..999
    const std::array<char, 5> fraction{'.', static_cast<char>('0' + millis / 100),
                                       static_cast<char>('0' + millis / 10 % 10),
                                       static_cast<char>('0' + millis % 10), 'Z'};
    line.append(fraction.data(), fraction.size());
}

}  // namespace

std::string format_line(Level level, std::string_view event, std::initializer_list<Field> fields) {
    std::string line;
    line.reserve(256);  // an access line fits: one allocation, not a growth per field
    line += "ts=";
    append_timestamp(line);
    line += " level=";
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
