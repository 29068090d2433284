#pragma once
// TLS ClientHello parser (RFC 8446 section 4.1.2, RFC 5246 section 7.4.1.2). Takes the whole
// prefix of a client's stream seen so far and reassembles the ClientHello handshake message
// across any number of TLS records, however the bytes were split into TCP reads.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "splicer/probe.h"

namespace splicer::tls {

// Largest ClientHello handshake message accepted. Post-quantum key shares already bring
// hellos to ~22 KB; larger ones are refused as a clean no_match instead of buffered forever.
inline constexpr std::size_t kMaxClientHelloLength = 60 * 1024;
// Most bytes of stream prefix the parser will look at: the hello plus its record headers
// (one per 16 KiB record, more if a peer uses tiny records). A hello that does not complete
// within this many bytes is a no_match, so a caller's probe buffer of this size never hangs.
inline constexpr std::size_t kMaxProbeBytes = 64 * 1024;

struct ClientHello {
    std::uint16_t legacy_version = 0;           // e.g. 0x0303
    std::string server_name;                    // host_name from SNI, as sent; empty if none
    std::vector<std::string> alpn_protocols;    // in the client's order
    std::vector<std::uint16_t> supported_versions;  // from the extension, if present
    bool has_encrypted_client_hello = false;    // ECH outer hello: server_name is the public name
};

struct ParseResult {
    probe::Verdict verdict = probe::Verdict::need_more;
    ClientHello hello;   // meaningful when verdict == match
    const char* reason = "";  // why no_match (static string, for logs and tests)
    // need_more: how long the stream must be before asking again is worth it. Once the
    // handshake header has given the hello's length it is the earliest offset at which the
    // hello can end (never past a well-formed hello's last byte, so a caller that waits for
    // it delays no real client); a malformed stream may then be refused only at that length
    // instead of at its first bad byte. Before that, one more byte (prefix.size() + 1).
    std::size_t needed = 0;
};

// Parses `prefix`, the first bytes of the stream. need_more until the last byte of the
// ClientHello has arrived; match with the extracted fields; no_match (with a reason) for
// anything that is not a well-formed ClientHello within kMaxClientHelloLength. Never reads
// outside `prefix`.
ParseResult parse_client_hello(std::span<const std::byte> prefix);

}  // namespace splicer::tls
