#include <algorithm>
#include <cctype>

#include "splicer/router.h"

namespace splicer::route {

std::string normalize_hostname(std::string_view name) {
    if (!name.empty() && name.back() == '.') {
        name.remove_suffix(1);
    }
    std::string lower(name);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) {
        return static_cast<char>(std::tolower(c));
    });
    return lower;
}

bool hostname_matches(std::string_view pattern, std::string_view name) {
    const std::string host = normalize_hostname(name);
    if (host.empty()) {
        return false;
    }
    if (pattern == "*") {
        return true;
    }
    if (pattern.size() > 2 && pattern.substr(0, 2) == "*.") {
        const std::string_view suffix = pattern.substr(1);  // ".example.com"
        return host.size() > suffix.size() &&
               std::string_view(host).substr(host.size() - suffix.size()) == suffix;
    }
    return host == pattern;
}

}  // namespace splicer::route
