// parse_network() and network_contains() (splicer/config.h): the CIDR strings of
// `trusted_proxies`.

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <string>

#include "splicer/config.h"

namespace splicer::config {
namespace {

// The prefix length after '/': decimal digits only, at most `max_bits`.
std::optional<std::uint32_t> parse_bits(std::string_view text, std::uint32_t max_bits) {
    if (text.empty() || text.size() > 3 || (text.size() > 1 && text[0] == '0')) {
        return std::nullopt;
    }
    std::uint32_t bits = 0;
    for (const char c : text) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        bits = bits * 10 + static_cast<std::uint32_t>(c - '0');
    }
    if (bits > max_bits) {
        return std::nullopt;
    }
    return bits;
}

// Whether the first `bits` bits of `a` and `b` agree.
bool same_prefix(const std::uint8_t* a, const std::uint8_t* b, std::uint32_t bits) {
    const std::size_t whole = bits / 8;
    if (std::memcmp(a, b, whole) != 0) {
        return false;
    }
    const std::uint32_t rest = bits % 8;
    if (rest == 0) {
        return true;
    }
    const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

}  // namespace

std::optional<Network> parse_network(std::string_view text) {
    Network network;
    network.text = std::string(text);
    const std::size_t slash = text.find('/');
    const std::string address(text.substr(0, slash));
    if (::inet_pton(AF_INET, address.c_str(), network.address.data()) == 1) {
        network.family = AF_INET;
    } else if (::inet_pton(AF_INET6, address.c_str(), network.address.data()) == 1) {
        network.family = AF_INET6;
    } else {
        return std::nullopt;
    }
    const std::uint32_t max_bits = network.family == AF_INET ? 32 : 128;
    network.prefix_length = max_bits;
    if (slash != std::string_view::npos) {
        const auto bits = parse_bits(text.substr(slash + 1), max_bits);
        if (!bits) {
            return std::nullopt;
        }
        network.prefix_length = *bits;
    }
    // Host bits set past the prefix: refused, not silently masked.
    std::array<std::uint8_t, 16> masked = network.address;
    for (std::uint32_t bit = network.prefix_length; bit < max_bits; ++bit) {
        masked[bit / 8] = static_cast<std::uint8_t>(masked[bit / 8] & ~(0x80 >> (bit % 8)));
    }
    if (masked != network.address) {
        return std::nullopt;
    }
    return network;
}

bool network_contains(const Network& network, int family, const std::uint8_t* address) {
    static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (family == AF_INET6 && std::memcmp(address, kMapped, sizeof(kMapped)) == 0) {
        family = AF_INET;
        address += sizeof(kMapped);
    }
    if (family != network.family) {
        return false;
    }
    return same_prefix(address, network.address.data(), network.prefix_length);
}

}  // namespace splicer::config
