// TLS ClientHello parser. Two phases, so the common need_more answer stays cheap while a
// hello trickles in: first walk the record headers only, counting handshake bytes and
// checking the 4-byte handshake header; only once the whole message is present, gather it
// (in place when it sits in one record) and parse the body with a bounds-checked reader.

#include "splicer/tls_client_hello.h"

#include <algorithm>
#include <array>
#include <bitset>
#include <limits>

namespace splicer::tls {
namespace {

using probe::Verdict;
using Bytes = std::span<const std::byte>;

constexpr std::uint8_t kContentTypeHandshake = 0x16;
constexpr std::uint8_t kVersionMajor = 3;
constexpr std::size_t kRecordHeaderLength = 5;
// RFC 8446 section 5.1: TLSPlaintext.length MUST NOT exceed 2^14.
constexpr std::size_t kMaxRecordLength = 16384;
constexpr std::size_t kHandshakeHeaderLength = 4;
constexpr std::uint8_t kHandshakeTypeClientHello = 1;
constexpr std::size_t kRandomLength = 32;
constexpr std::size_t kMaxSessionIdLength = 32;

constexpr std::uint16_t kExtensionServerName = 0;
constexpr std::uint16_t kExtensionAlpn = 16;
constexpr std::uint16_t kExtensionSupportedVersions = 43;
constexpr std::uint16_t kExtensionEncryptedClientHello = 0xfe0d;
constexpr std::uint8_t kNameTypeHostName = 0;

std::uint8_t byte_at(Bytes bytes, std::size_t index) {
    return std::to_integer<std::uint8_t>(bytes[index]);
}

std::size_t read_be16(Bytes bytes, std::size_t index) {
    return (static_cast<std::size_t>(byte_at(bytes, index)) << 8U) | byte_at(bytes, index + 1);
}

// A cursor over a byte span whose every read checks the bounds first and reports failure
// instead of reading past the end: a lying length field can only ever produce a no_match.
class Reader {
public:
    explicit Reader(Bytes bytes) : bytes_(bytes) {}

    [[nodiscard]] bool empty() const { return bytes_.empty(); }
    [[nodiscard]] std::size_t remaining() const { return bytes_.size(); }
    [[nodiscard]] Bytes rest() const { return bytes_; }

    [[nodiscard]] bool read_u8(std::uint8_t& out) {
        if (bytes_.empty()) {
            return false;
        }
        out = byte_at(bytes_, 0);
        bytes_ = bytes_.subspan(1);
        return true;
    }

    [[nodiscard]] bool read_u16(std::uint16_t& out) {
        if (bytes_.size() < 2) {
            return false;
        }
        out = static_cast<std::uint16_t>(read_be16(bytes_, 0));
        bytes_ = bytes_.subspan(2);
        return true;
    }

    [[nodiscard]] bool skip(std::size_t length) {
        if (bytes_.size() < length) {
            return false;
        }
        bytes_ = bytes_.subspan(length);
        return true;
    }

    // A TLS vector with a 1-byte length prefix, as its own reader.
    [[nodiscard]] bool read_vector8(Reader& out) {
        std::uint8_t length = 0;
        Reader probe = *this;
        if (!probe.read_u8(length) || probe.remaining() < length) {
            return false;
        }
        out = Reader(probe.bytes_.first(length));
        bytes_ = probe.bytes_.subspan(length);
        return true;
    }

    // A TLS vector with a 2-byte length prefix, as its own reader.
    [[nodiscard]] bool read_vector16(Reader& out) {
        std::uint16_t length = 0;
        Reader probe = *this;
        if (!probe.read_u16(length) || probe.remaining() < length) {
            return false;
        }
        out = Reader(probe.bytes_.first(length));
        bytes_ = probe.bytes_.subspan(length);
        return true;
    }

private:
    Bytes bytes_;
};

ParseResult no_match(const char* reason) {
    ParseResult result;
    result.verdict = Verdict::no_match;
    result.reason = reason;
    return result;
}

ParseResult need_more(std::size_t needed) {
    ParseResult result;
    result.needed = needed;
    return result;
}

std::string to_string(Bytes bytes) {
    std::string text(bytes.size(), '\0');
    std::transform(bytes.begin(), bytes.end(), text.begin(),
                   [](std::byte b) { return static_cast<char>(std::to_integer<std::uint8_t>(b)); });
    return text;
}

bool is_host_name_byte(std::uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

// RFC 6066 section 3. Exactly one host_name entry: several names would leave the router to
// guess which one the client means, and no client sends more than one.
const char* parse_server_name(Reader data, std::string& server_name) {
    Reader list(Bytes{});
    if (!data.read_vector16(list)) {
        return "SNI list length overruns its extension";
    }
    if (!data.empty()) {
        return "SNI list does not fill its extension";
    }
    std::uint8_t name_type = 0;
    if (!list.read_u8(name_type)) {
        return "SNI list is empty";
    }
    if (name_type != kNameTypeHostName) {
        return "SNI name type is not host_name";
    }
    Reader name(Bytes{});
    if (!list.read_vector16(name)) {
        return "SNI name length overruns its list";
    }
    if (!list.empty()) {
        return "more than one SNI entry";
    }
    if (name.empty()) {
        return "SNI name is empty";
    }
    const Bytes name_bytes = name.rest();
    if (!std::all_of(name_bytes.begin(), name_bytes.end(), [](std::byte b) {
            return is_host_name_byte(std::to_integer<std::uint8_t>(b));
        })) {
        return "SNI name has a byte outside [A-Za-z0-9._-]";
    }
    server_name = to_string(name_bytes);
    return nullptr;
}

// RFC 7301 section 3.1: ProtocolName protocol_name_list<2..2^16-1>, each name <1..2^8-1>.
const char* parse_alpn(Reader data, std::vector<std::string>& protocols) {
    Reader list(Bytes{});
    if (!data.read_vector16(list)) {
        return "ALPN list length overruns its extension";
    }
    if (!data.empty()) {
        return "ALPN list does not fill its extension";
    }
    if (list.remaining() < 2) {
        return "ALPN list shorter than 2 bytes";
    }
    while (!list.empty()) {
        Reader protocol(Bytes{});
        if (!list.read_vector8(protocol)) {
            return "ALPN protocol length overruns its list";
        }
        if (protocol.empty()) {
            return "empty ALPN protocol name";
        }
        protocols.push_back(to_string(protocol.rest()));
    }
    return nullptr;
}

// RFC 8446 section 4.2.1: ProtocolVersion versions<2..254> in a ClientHello.
const char* parse_supported_versions(Reader data, std::vector<std::uint16_t>& versions) {
    Reader list(Bytes{});
    if (!data.read_vector8(list)) {
        return "supported_versions list length overruns its extension";
    }
    if (!data.empty()) {
        return "supported_versions list does not fill its extension";
    }
    if (list.remaining() < 2 || list.remaining() % 2 != 0) {
        return "supported_versions list length is odd or zero";
    }
    while (!list.empty()) {
        std::uint16_t version = 0;
        if (!list.read_u16(version)) {
            return "supported_versions list length is odd or zero";
        }
        versions.push_back(version);
    }
    return nullptr;
}

const char* parse_extensions(Reader extensions, ClientHello& hello) {
    // One bit per extension type (8 KiB): a duplicate check that stays linear however many
    // extensions a hostile hello packs in. RFC 8446 section 4.2 forbids duplicates.
    std::bitset<std::numeric_limits<std::uint16_t>::max() + 1U> seen;
    while (!extensions.empty()) {
        std::uint16_t type = 0;
        Reader data(Bytes{});
        if (!extensions.read_u16(type)) {
            return "extension header overruns extensions block";
        }
        if (!extensions.read_vector16(data)) {
            return "extension length overruns extensions block";
        }
        if (seen.test(type)) {
            return "duplicate extension";
        }
        seen.set(type);
        const char* error = nullptr;
        switch (type) {
            case kExtensionServerName:
                error = parse_server_name(data, hello.server_name);
                break;
            case kExtensionAlpn:
                error = parse_alpn(data, hello.alpn_protocols);
                break;
            case kExtensionSupportedVersions:
                error = parse_supported_versions(data, hello.supported_versions);
                break;
            case kExtensionEncryptedClientHello:
                hello.has_encrypted_client_hello = true;
                break;
            default:
                break;  // unknown and GREASE extensions are skipped unread
        }
        if (error != nullptr) {
            return error;
        }
    }
    return nullptr;
}

// RFC 8446 section 4.1.2 (RFC 5246 section 7.4.1.2 has the same layout): the body of a
// complete ClientHello handshake message, without its 4-byte header.
ParseResult parse_body(Bytes body) {
    ParseResult result;
    ClientHello& hello = result.hello;
    Reader reader(body);
    if (!reader.read_u16(hello.legacy_version)) {
        return no_match("ClientHello shorter than its legacy_version");
    }
    if ((hello.legacy_version >> 8U) != kVersionMajor) {
        return no_match("ClientHello legacy_version major is not 3");
    }
    if (!reader.skip(kRandomLength)) {
        return no_match("ClientHello shorter than its random");
    }
    Reader session_id(Bytes{});
    if (!reader.read_vector8(session_id)) {
        return no_match("session_id length overruns ClientHello");
    }
    if (session_id.remaining() > kMaxSessionIdLength) {
        return no_match("session_id longer than 32 bytes");
    }
    Reader cipher_suites(Bytes{});
    if (!reader.read_vector16(cipher_suites)) {
        return no_match("cipher_suites length overruns ClientHello");
    }
    if (cipher_suites.remaining() < 2 || cipher_suites.remaining() % 2 != 0) {
        return no_match("cipher_suites length is odd or zero");
    }
    Reader compression_methods(Bytes{});
    if (!reader.read_vector8(compression_methods)) {
        return no_match("compression_methods length overruns ClientHello");
    }
    if (compression_methods.empty()) {
        return no_match("compression_methods is empty");
    }
    // A TLS 1.2 hello may end here (RFC 5246 section 7.4.1.2): no extensions, so no SNI.
    if (!reader.empty()) {
        Reader extensions(Bytes{});
        if (!reader.read_vector16(extensions)) {
            return no_match("extensions length overruns ClientHello");
        }
        if (!reader.empty()) {
            return no_match("extensions block does not fill the ClientHello");
        }
        if (const char* error = parse_extensions(extensions, hello); error != nullptr) {
            return no_match(error);
        }
    }
    result.verdict = Verdict::match;
    return result;
}

// Copies the handshake message out of the records that carry it. Only called once the
// header walk has checked every one of those records and found the message complete.
std::vector<std::byte> gather_message(Bytes prefix, std::size_t message_length) {
    std::vector<std::byte> message;
    message.reserve(message_length);
    std::size_t record = 0;
    while (message.size() < message_length) {
        const std::size_t length = read_be16(prefix, record + 3);
        const std::size_t take = std::min(length, message_length - message.size());
        const Bytes payload = prefix.subspan(record + kRecordHeaderLength, take);
        message.insert(message.end(), payload.begin(), payload.end());
        record += kRecordHeaderLength + length;
    }
    return message;
}

}  // namespace

ParseResult parse_client_hello(std::span<const std::byte> prefix) {
    if (prefix.empty()) {
        return need_more(1);
    }
    // An SSLv2 CLIENT-HELLO starts with a 2-byte record length with the high bit set; no
    // TLS record type has that bit, and nothing routes on SSLv2.
    if ((byte_at(prefix, 0) & 0x80U) != 0) {
        return no_match("SSLv2-style ClientHello");
    }
    const std::size_t size = prefix.size();
    std::array<std::uint8_t, kHandshakeHeaderLength> header{};
    std::size_t gathered = 0;        // handshake message bytes seen so far, header included
    std::size_t message_length = 0;  // header + body; 0 until the header is complete
    std::size_t records = 0;         // records carrying the message
    // Fewest handshake bytes still to come: a lower bound while the header is incomplete.
    const auto missing = [&] {
        return message_length != 0 ? message_length - gathered : kHandshakeHeaderLength - gathered;
    };
    // The earliest stream offset at which the message could end is past kMaxProbeBytes: refuse
    // now instead of waiting for bytes that could only end in a refusal. Otherwise that
    // offset is when to look again, once the message's length is known: a hello arriving
    // in many small segments is then parsed a few times instead of once per segment.
    const auto need_more_within_limit = [&](std::size_t earliest_end) {
        if (earliest_end > kMaxProbeBytes) {
            return no_match("ClientHello does not complete within kMaxProbeBytes");
        }
        return need_more(message_length != 0 ? earliest_end : size + 1);
    };

    std::size_t record = 0;  // stream offset of the current record header
    while (true) {
        if (record + kRecordHeaderLength + missing() > kMaxProbeBytes) {
            return no_match("ClientHello does not complete within kMaxProbeBytes");
        }
        const std::size_t header_bytes = std::min(size - record, kRecordHeaderLength);
        if (header_bytes >= 1 && byte_at(prefix, record) != kContentTypeHandshake) {
            return no_match("not a TLS handshake record");
        }
        if (header_bytes >= 2 && byte_at(prefix, record + 1) != kVersionMajor) {
            return no_match("TLS record version major is not 3");
        }
        if (header_bytes < kRecordHeaderLength) {
            return need_more_within_limit(size + (kRecordHeaderLength - header_bytes) + missing());
        }
        const std::size_t length = read_be16(prefix, record + 3);
        if (length == 0) {
            // RFC 8446 section 5.1: zero-length handshake fragments MUST NOT be sent.
            return no_match("zero-length TLS record");
        }
        if (length > kMaxRecordLength) {
            return no_match("TLS record longer than 16384 bytes");
        }
        ++records;
        const std::size_t payload = record + kRecordHeaderLength;
        const std::size_t available = std::min(length, size - payload);
        std::size_t used = 0;  // payload bytes of this record consumed so far

        // The handshake header may itself be split across records (tiny records).
        while (gathered < kHandshakeHeaderLength && used < available) {
            header[gathered] = byte_at(prefix, payload + used);
            ++gathered;
            ++used;
            if (gathered == 1 && header[0] != kHandshakeTypeClientHello) {
                return no_match("handshake message is not a ClientHello");
            }
            if (gathered == kHandshakeHeaderLength) {
                const std::size_t body_length = (static_cast<std::size_t>(header[1]) << 16U) |
                                                (static_cast<std::size_t>(header[2]) << 8U) |
                                                header[3];
                if (body_length > kMaxClientHelloLength) {
                    return no_match("ClientHello too large");
                }
                message_length = kHandshakeHeaderLength + body_length;
            }
        }
        if (message_length != 0) {
            // RFC 8446 section 5.1: a ClientHello must end on a record boundary, and a client
            // sends nothing else in its first flight's handshake records. A record that runs
            // past the message's end is refused as soon as its header says so.
            if (length - used > message_length - gathered) {
                return no_match("ClientHello does not end at a record boundary");
            }
            const std::size_t take = std::min(available - used, message_length - gathered);
            gathered += take;
            used += take;
            if (gathered == message_length) {
                break;  // then used == length == available: the message ends this record
            }
        }
        if (available < length) {
            // Mid-record: the rest of this record, and the header of another if the message
            // needs more than this record still carries.
            const std::size_t rest_of_record = length - used;
            const std::size_t still_missing = missing();
            return need_more_within_limit(
                size + rest_of_record +
                (still_missing > rest_of_record
                     ? kRecordHeaderLength + still_missing - rest_of_record
                     : 0));
        }
        record = payload + length;
    }

    // The limit checks above used lower bounds while the handshake header was incomplete.
    if (record + kRecordHeaderLength + read_be16(prefix, record + 3) > kMaxProbeBytes) {
        return no_match("ClientHello does not complete within kMaxProbeBytes");
    }
    const std::size_t body_length = message_length - kHandshakeHeaderLength;
    if (records == 1) {
        return parse_body(
            prefix.subspan(kRecordHeaderLength + kHandshakeHeaderLength, body_length));
    }
    const std::vector<std::byte> message = gather_message(prefix, message_length);
    return parse_body(std::span<const std::byte>(message).subspan(kHandshakeHeaderLength));
}

}  // namespace splicer::tls
