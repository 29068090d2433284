#pragma once
// Views of probe bytes as text, for the probes that look for ASCII tokens.

#include <cstddef>
#include <span>
#include <string_view>

namespace splicer::probe {

inline std::string_view as_text(std::span<const std::byte> bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// need_more while `text` is a proper prefix of `token`, match once it starts with it,
// no_match as soon as one byte differs.
enum class PrefixState { partial, complete, differs };
inline PrefixState compare_prefix(std::string_view text, std::string_view token) {
    const std::size_t n = text.size() < token.size() ? text.size() : token.size();
    if (text.substr(0, n) != token.substr(0, n)) {
        return PrefixState::differs;
    }
    return text.size() >= token.size() ? PrefixState::complete : PrefixState::partial;
}

}  // namespace splicer::probe
