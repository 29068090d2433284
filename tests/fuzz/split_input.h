#pragma once
// How the stream fuzz targets read their input: the first byte says how many split points
// follow (0-15), each split point is a big-endian u16 (taken modulo the stream length), and
// the rest is the stream a client sent. The targets feed the parser every prefix that ends at
// a split point and then the whole stream, as the daemon sees a stream arrive in TCP reads.
// tests/fuzz/make_seeds writes seeds in this layout.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace splicer::fuzz {

inline constexpr std::size_t kMaxSplits = 15;

struct SplitInput {
    std::span<const std::byte> stream;
    std::vector<std::size_t> prefix_lengths;  // ascending, distinct, ends with stream.size()
};

inline SplitInput split_input(const std::uint8_t* data, std::size_t size) {
    SplitInput input;
    if (size == 0) {
        return input;
    }
    std::size_t splits = data[0] % (kMaxSplits + 1);
    std::size_t header = 1 + 2 * splits;
    if (header > size) {
        splits = (size - 1) / 2;
        header = 1 + 2 * splits;
    }
    input.stream = std::as_bytes(std::span(data + header, size - header));
    for (std::size_t i = 0; i < splits && !input.stream.empty(); ++i) {
        const std::size_t raw = (std::size_t{data[1 + 2 * i]} << 8) | data[2 + 2 * i];
        input.prefix_lengths.push_back(raw % input.stream.size());
    }
    input.prefix_lengths.push_back(input.stream.size());
    std::sort(input.prefix_lengths.begin(), input.prefix_lengths.end());
    input.prefix_lengths.erase(
        std::unique(input.prefix_lengths.begin(), input.prefix_lengths.end()),
        input.prefix_lengths.end());
    return input;
}

// Split header bytes for `cuts` (at most kMaxSplits), to put in front of a seed stream.
inline std::vector<std::uint8_t> split_header(const std::vector<std::uint16_t>& cuts) {
    std::vector<std::uint8_t> header{static_cast<std::uint8_t>(cuts.size())};
    for (const std::uint16_t cut : cuts) {
        header.push_back(static_cast<std::uint8_t>(cut >> 8));
        header.push_back(static_cast<std::uint8_t>(cut & 0xff));
    }
    return header;
}

}  // namespace splicer::fuzz
