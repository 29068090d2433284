#pragma once
// A string in 16 bytes where std::string takes 32: up to 15 bytes inline, longer ones on the
// heap (a pointer and a 32-bit length in the same 16 bytes). For the short texts every
// connection record keeps for its whole life (its client's key, the rule's name, SNI, ALPN:
// daemon/connection.h), where std::string's other 16 bytes are paid per connection, idle ones
// included. Read as a std::string_view (or copied out as a std::string); no terminating NUL.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

namespace splicer::memory {

class CompactString {
public:
    static constexpr std::size_t kInlineBytes = 15;
    // Longer texts are cut here (no text splicer keeps comes near: SNI is at most 255 bytes).
    static constexpr std::size_t kMaxBytes = std::numeric_limits<std::uint32_t>::max();

    CompactString() = default;
    CompactString(const CompactString& other) { assign(other.view()); }
    CompactString(CompactString&& other) noexcept : bytes_(other.bytes_), tag_(other.tag_) {
        other.tag_ = 0;
    }
    CompactString& operator=(const CompactString& other) {
        if (this != &other) {
            assign(other.view());
        }
        return *this;
    }
    CompactString& operator=(CompactString&& other) noexcept {
        if (this != &other) {
            release();
            bytes_ = other.bytes_;
            tag_ = other.tag_;
            other.tag_ = 0;
        }
        return *this;
    }
    CompactString& operator=(std::string_view text) {
        assign(text);
        return *this;
    }
    ~CompactString() { release(); }

    [[nodiscard]] bool empty() const { return tag_ == 0; }
    [[nodiscard]] std::size_t size() const { return tag_ == kHeap ? heap_size() : tag_; }
    [[nodiscard]] std::string_view view() const {
        return tag_ == kHeap ? std::string_view(heap_data(), heap_size())
                             : std::string_view(bytes_.data(), tag_);
    }
    [[nodiscard]] std::string substr(std::size_t position,
                                     std::size_t count = std::string_view::npos) const {
        return std::string(view().substr(position, count));
    }
    // Implicit, so that it reads where the std::string it replaced was read.
    operator std::string_view() const { return view(); }
    operator std::string() const { return std::string(view()); }

private:
    static constexpr std::uint8_t kHeap = 0xff;  // tag_: bytes_ holds a pointer and a length

    void assign(std::string_view text) {
        text = text.substr(0, kMaxBytes);
        // Built aside first: `text` may point into this string's own bytes.
        std::array<char, kInlineBytes> made{};
        std::uint8_t tag = 0;
        if (text.size() <= kInlineBytes) {
            std::copy(text.begin(), text.end(), made.begin());
            tag = static_cast<std::uint8_t>(text.size());
        } else {
            char* heap = new char[text.size()];
            std::copy(text.begin(), text.end(), heap);
            const auto length = static_cast<std::uint32_t>(text.size());
            std::memcpy(made.data(), &heap, sizeof heap);
            std::memcpy(made.data() + sizeof heap, &length, sizeof length);
            tag = kHeap;
        }
        release();
        bytes_ = made;
        tag_ = tag;
    }
    void release() {
        if (tag_ == kHeap) {
            delete[] heap_data();
        }
        tag_ = 0;
    }
    [[nodiscard]] char* heap_data() const {
        char* heap = nullptr;
        std::memcpy(&heap, bytes_.data(), sizeof heap);
        return heap;
    }
    [[nodiscard]] std::uint32_t heap_size() const {
        std::uint32_t length = 0;
        std::memcpy(&length, bytes_.data() + sizeof(char*), sizeof length);
        return length;
    }

    std::array<char, kInlineBytes> bytes_{};
    std::uint8_t tag_ = 0;  // 0..15: that many bytes inline; kHeap: on the heap
};
static_assert(sizeof(void*) != 8 || sizeof(CompactString) == 16);

}  // namespace splicer::memory
