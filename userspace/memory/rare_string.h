#pragma once
// A string that is empty nearly always (an error text, a close reason, an optional TLV) held
// out of line: 8 bytes in the record that has it instead of std::string's 32, and no
// allocation until a non-empty value is set. For members of the records every connection
// keeps for its whole life (daemon/connection.h, the TLS transport), where those 24 bytes
// are paid per idle connection while the text is there for a handful of them.

#include <memory>
#include <string>
#include <string_view>

namespace splicer::memory {

class RareString {
public:
    RareString() = default;
    RareString(const RareString& other) { *this = other.view(); }
    RareString(RareString&&) noexcept = default;
    RareString& operator=(const RareString& other) {
        if (this != &other) {
            *this = other.view();
        }
        return *this;
    }
    RareString& operator=(RareString&&) noexcept = default;
    ~RareString() = default;

    // An empty text frees what was held: empty() and "no text" are the same state.
    RareString& operator=(std::string_view text) {
        if (text.empty()) {
            text_.reset();
        } else {
            text_ = std::make_unique<std::string>(text);
        }
        return *this;
    }

    [[nodiscard]] bool empty() const { return !text_; }
    [[nodiscard]] const std::string& str() const { return text_ ? *text_ : empty_text(); }
    [[nodiscard]] std::string_view view() const { return str(); }
    // Implicit: read where a string_view or a std::string is, like the std::string it replaced.
    operator std::string_view() const { return view(); }
    operator const std::string&() const { return str(); }

private:
    static const std::string& empty_text() {
        static const std::string empty;
        return empty;
    }

    std::unique_ptr<std::string> text_;
};

}  // namespace splicer::memory
