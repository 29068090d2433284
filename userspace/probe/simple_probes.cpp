// The probes that need no state and no library: SSH, HTTP/1.x, OpenVPN over TCP, anyprot.
// Each keeps sslh's meaning but answers need_more instead of guessing on a short prefix.

#include <array>
#include <cstdint>

#include "probe/byte_text.h"
#include "splicer/probe.h"

namespace splicer::probe {

Verdict probe_ssh(Bytes prefix) {
    switch (compare_prefix(as_text(prefix), "SSH-")) {
        case PrefixState::partial: return Verdict::need_more;
        case PrefixState::complete: return Verdict::match;
        case PrefixState::differs: return Verdict::no_match;
    }
    return Verdict::no_match;
}

Verdict probe_http(Bytes prefix) {
    // RFC 9110 methods, plus PATCH (RFC 5789); each followed by the request line's space.
    static constexpr std::array<std::string_view, 9> kRequestLineStarts = {
        "GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "CONNECT ", "OPTIONS ", "TRACE ", "PATCH "};
    const std::string_view text = as_text(prefix);
    bool could_still_match = false;
    for (const std::string_view start : kRequestLineStarts) {
        switch (compare_prefix(text, start)) {
            case PrefixState::complete: return Verdict::match;
            case PrefixState::partial: could_still_match = true; break;
            case PrefixState::differs: break;
        }
    }
    return could_still_match ? Verdict::need_more : Verdict::no_match;
}

Verdict probe_openvpn(Bytes prefix) {
    // OpenVPN's TCP framing: a big-endian 16-bit packet length, then the opcode byte
    // (opcode << 3 | key_id). A client opens with P_CONTROL_HARD_RESET_CLIENT_V2 (7) or,
    // with tls-crypt-v2, _V3 (10), always on key id 0. The smallest such packet (no
    // tls-auth) is opcode 1 + session id 8 + ack array length 1 + packet id 4 = 14 bytes.
    constexpr std::uint8_t kHardResetClientV2 = 7;
    constexpr std::uint8_t kHardResetClientV3 = 10;
    constexpr std::size_t kMinPacket = 14;
    constexpr std::size_t kMaxPacket = 1600;  // one control packet fits in a link MTU
    if (prefix.size() < 3) {
        return Verdict::need_more;
    }
    const auto length = static_cast<std::size_t>(
        (std::to_integer<unsigned>(prefix[0]) << 8U) | std::to_integer<unsigned>(prefix[1]));
    const auto opcode_byte = std::to_integer<std::uint8_t>(prefix[2]);
    const auto opcode = static_cast<std::uint8_t>(opcode_byte >> 3U);
    const auto key_id = static_cast<std::uint8_t>(opcode_byte & 7U);
    if (length < kMinPacket || length > kMaxPacket || key_id != 0 ||
        (opcode != kHardResetClientV2 && opcode != kHardResetClientV3)) {
        return Verdict::no_match;
    }
    return prefix.size() >= 2 + length ? Verdict::match : Verdict::need_more;
}

Verdict probe_anyprot(Bytes prefix) {
    return prefix.empty() ? Verdict::need_more : Verdict::match;
}

}  // namespace splicer::probe
