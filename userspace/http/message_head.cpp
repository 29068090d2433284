#include "http/message_head.h"

#include <algorithm>
#include <cctype>

namespace splicer::http {

bool equals_ignoring_case(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
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
