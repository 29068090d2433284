#include "http/message_head.h"

#include <algorithm>

namespace splicer::http {

static_assert(ascii_lower('A') == 'a' && ascii_lower('Z') == 'z' && ascii_lower('a') == 'a' &&
              ascii_lower('@') == '@' && ascii_lower('[') == '[' && ascii_lower('\xc4') == '\xc4');

bool equals_ignoring_case(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return ascii_lower(x) == ascii_lower(y);
           });
}

const Header* MessageHead::find(std::string_view name) const {
    for (const Header& header : headers) {
        if (equals_ignoring_case(header.name, name)) {
            return &header;
        }
    }
    return nullptr;
}

std::string version_text(const MessageHead& head) {
    return "HTTP/" + std::to_string(head.major) + "." + std::to_string(head.minor);
}

}  // namespace splicer::http
