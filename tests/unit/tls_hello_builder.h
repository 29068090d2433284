#pragma once
// Builds TLS ClientHello bytes field by field, for the odd hellos no TLS library will send:
// GREASE, ECH outer hellos, huge key shares, no extensions, tiny records. It also reports
// where each length field landed, so a test can corrupt exactly one of them.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace splicer::testing {

using ByteVector = std::vector<std::uint8_t>;

inline constexpr std::size_t kRecordHeaderSize = 5;
inline constexpr std::size_t kHandshakeHeaderSize = 4;
inline constexpr std::size_t kMaxRecordPayload = 16384;

struct Extension {
    std::uint16_t type = 0;
    ByteVector data;
};

// Well-formed extension bodies (RFC 6066, 7301, 8446).
Extension server_name_extension(std::string_view host_name);
Extension alpn_extension(const std::vector<std::string>& protocols);
Extension supported_versions_extension(const std::vector<std::uint16_t>& versions);
Extension key_share_extension(std::uint16_t group, std::size_t key_exchange_size);

struct HelloSpec {
    std::uint8_t handshake_type = 1;  // client_hello
    std::uint16_t legacy_version = 0x0303;
    ByteVector session_id = ByteVector(32, 0x5a);
    std::vector<std::uint16_t> cipher_suites = {0x1301, 0x1302, 0x1303, 0xc02f};
    ByteVector compression_methods = {0};
    bool has_extensions_block = true;  // false: the body ends after compression_methods
    std::vector<Extension> extensions;
};

// Stream offsets, in the one-record hello build_hello() returns, of each length field.
struct HelloLayout {
    std::size_t record_length = 3;               // u16
    std::size_t handshake_length = 6;            // u24
    std::size_t session_id_length = 0;           // u8
    std::size_t cipher_suites_length = 0;        // u16
    std::size_t compression_methods_length = 0;  // u8
    std::size_t extensions_length = 0;           // u16, when the block is present
    std::vector<std::size_t> extension_starts;   // each extension's type field (u16, u16 len)
};

// The handshake message: 4-byte header, then the body.
ByteVector build_handshake(const HelloSpec& spec);
// Cuts a handshake message into records of at most `max_payload` bytes each.
ByteVector build_records(const ByteVector& handshake, std::size_t max_payload = kMaxRecordPayload,
                         std::uint8_t content_type = 0x16, std::uint16_t record_version = 0x0301);
// The whole hello in records of at most kMaxRecordPayload bytes. Fills `layout` if given,
// which needs the hello to fit in one record (throws std::length_error otherwise).
ByteVector build_hello(const HelloSpec& spec, HelloLayout* layout = nullptr);

// Big-endian field access, for tests that corrupt one field of a built hello.
std::uint32_t get_be(const ByteVector& bytes, std::size_t offset, std::size_t width);
void set_be(ByteVector& bytes, std::size_t offset, std::size_t width, std::uint32_t value);

}  // namespace splicer::testing
