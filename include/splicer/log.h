#pragma once
// One logfmt line per event on stderr: `level=info event=listening addr=0.0.0.0:443`.
// Values with spaces, quotes or '=' are quoted; the time comes first so lines sort.

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace splicer::log {

enum class Level { debug, info, notice, warning, error };

using Field = std::pair<std::string_view, std::string>;

// Formats one line without the trailing newline (tests use it directly).
std::string format_line(Level level, std::string_view event, std::initializer_list<Field> fields);

void write(Level level, std::string_view event, std::initializer_list<Field> fields = {});

inline void info(std::string_view event, std::initializer_list<Field> fields = {}) {
    write(Level::info, event, fields);
}
inline void notice(std::string_view event, std::initializer_list<Field> fields = {}) {
    write(Level::notice, event, fields);
}
inline void warning(std::string_view event, std::initializer_list<Field> fields = {}) {
    write(Level::warning, event, fields);
}
inline void error(std::string_view event, std::initializer_list<Field> fields = {}) {
    write(Level::error, event, fields);
}

}  // namespace splicer::log
