#include "upgrade/handover_protocol.h"

#include <algorithm>
#include <cstring>

namespace splicer::upgrade {
namespace {

constexpr char kOfferMagic[4] = {'S', 'P', 'L', 'U'};
constexpr char kReadyMagic[4] = {'S', 'P', 'L', 'R'};
constexpr std::uint8_t kFlagHttp = 1U << 0;
constexpr std::uint8_t kFlagFromSystemd = 1U << 1;
constexpr std::uint8_t kFlagMetrics = 1U << 2;
constexpr std::uint8_t kKnownFlags = kFlagHttp | kFlagFromSystemd | kFlagMetrics;
// magic (4) + version (2) + total (2) + first (2) + count (2), integers big-endian
constexpr std::size_t kOfferHeaderBytes = 12;
// magic (4) + version (2) + pid (4, big-endian)
constexpr std::size_t kReadyBytes = 10;

void put_u16(std::string& out, std::uint16_t value) {
    out.push_back(static_cast<char>(value >> 8));
    out.push_back(static_cast<char>(value & 0xff));
}

std::uint16_t get_u16(std::span<const std::byte> bytes, std::size_t at) {
    return static_cast<std::uint16_t>(std::to_integer<unsigned>(bytes[at]) << 8 |
                                      std::to_integer<unsigned>(bytes[at + 1]));
}

bool has_magic(std::span<const std::byte> bytes, const char (&magic)[4]) {
    return bytes.size() >= sizeof magic && std::memcmp(bytes.data(), magic, sizeof magic) == 0;
}

}  // namespace

std::vector<std::string> encode_offer(std::span<const OfferedListener> listeners) {
    std::vector<std::string> records;
    for (std::size_t first = 0; first < listeners.size(); first += kListenersPerRecord) {
        const std::size_t count = std::min(kListenersPerRecord, listeners.size() - first);
        std::string out(kOfferMagic, sizeof kOfferMagic);
        put_u16(out, kProtocolVersion);
        put_u16(out, static_cast<std::uint16_t>(listeners.size()));
        put_u16(out, static_cast<std::uint16_t>(first));
        put_u16(out, static_cast<std::uint16_t>(count));
        for (const OfferedListener& listener : listeners.subspan(first, count)) {
            out.push_back(static_cast<char>((listener.http ? kFlagHttp : 0) |
                                            (listener.from_systemd ? kFlagFromSystemd : 0) |
                                            (listener.metrics ? kFlagMetrics : 0)));
        }
        records.push_back(std::move(out));
    }
    return records;
}

Result<OfferRecord> decode_offer(std::span<const std::byte> bytes) {
    if (bytes.size() < kOfferHeaderBytes || !has_magic(bytes, kOfferMagic)) {
        return Error{"not a handover offer"};
    }
    if (const std::uint16_t version = get_u16(bytes, 4); version != kProtocolVersion) {
        return Error{"handover protocol version " + std::to_string(version) +
                     ", this binary speaks " + std::to_string(kProtocolVersion)};
    }
    OfferRecord record;
    record.total = get_u16(bytes, 6);
    record.first = get_u16(bytes, 8);
    const std::size_t count = get_u16(bytes, 10);
    if (record.total == 0 || record.total > kMaxListeners) {
        return Error{"an offer of " + std::to_string(record.total) + " listeners (1 to " +
                     std::to_string(kMaxListeners) + ")"};
    }
    if (count == 0 || count > kListenersPerRecord) {
        return Error{"an offer record of " + std::to_string(count) + " listeners (1 to " +
                     std::to_string(kListenersPerRecord) + ")"};
    }
    if (record.first + count > record.total) {
        return Error{"an offer record of listeners " + std::to_string(record.first) + " to " +
                     std::to_string(record.first + count - 1) + " of " +
                     std::to_string(record.total)};
    }
    if (bytes.size() != kOfferHeaderBytes + count) {
        return Error{"an offer record of " + std::to_string(bytes.size()) + " bytes for " +
                     std::to_string(count) + " listeners"};
    }
    record.listeners.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        const auto flags = std::to_integer<std::uint8_t>(bytes[kOfferHeaderBytes + i]);
        if ((flags & ~kKnownFlags) != 0) {
            return Error{"unknown flags on offered listener " + std::to_string(record.first + i)};
        }
        record.listeners.push_back({.http = (flags & kFlagHttp) != 0,
                                    .from_systemd = (flags & kFlagFromSystemd) != 0,
                                    .metrics = (flags & kFlagMetrics) != 0});
    }
    return record;
}

std::string encode_ready(pid_t pid) {
    std::string out(kReadyMagic, sizeof kReadyMagic);
    put_u16(out, kProtocolVersion);
    const auto value = static_cast<std::uint32_t>(pid);
    put_u16(out, static_cast<std::uint16_t>(value >> 16));
    put_u16(out, static_cast<std::uint16_t>(value & 0xffff));
    return out;
}

Result<pid_t> decode_ready(std::span<const std::byte> bytes) {
    if (bytes.size() != kReadyBytes || !has_magic(bytes, kReadyMagic)) {
        return Error{"not a ready message"};
    }
    if (const std::uint16_t version = get_u16(bytes, 4); version != kProtocolVersion) {
        return Error{"ready of protocol version " + std::to_string(version)};
    }
    const std::uint32_t value =
        static_cast<std::uint32_t>(get_u16(bytes, 6)) << 16 | get_u16(bytes, 8);
    // pid_t is an int: a value above INT_MAX or 0/1 names no process that could be the new one.
    if (value <= 1 || value > 0x7fffffffU) {
        return Error{"ready with pid " + std::to_string(value)};
    }
    return static_cast<pid_t>(value);
}

}  // namespace splicer::upgrade
