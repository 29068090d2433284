#pragma once
// Protocol probes: pure functions over the bytes a client has sent so far (the growing prefix
// of its stream, as read with MSG_PEEK). Each answers need_more, match or no_match, and must
// answer the same for the same prefix however it was split on the wire.

#include <cstddef>
#include <span>
#include <string_view>

namespace splicer::probe {

enum class Verdict { need_more, match, no_match };

std::string_view to_string(Verdict verdict);

using Bytes = std::span<const std::byte>;

// Plain XMPP: an XML stream header (optional XML declaration, then <stream:stream ...>) that
// declares the jabber:client or jabber:server namespace. Unlike sslh, which gives up after
// 50 bytes, the header may be as long as kMaxXmppHeader.
inline constexpr std::size_t kMaxXmppHeader = 4096;
Verdict probe_xmpp(Bytes prefix);

// SSH: the identification string starts with "SSH-" (RFC 4253, section 4.2).
Verdict probe_ssh(Bytes prefix);

// HTTP/1.x: a request line starting with a known method and a space.
Verdict probe_http(Bytes prefix);

// OpenVPN over TCP: a 2-byte packet length, then P_CONTROL_HARD_RESET_CLIENT_V2 or _V3
// with key id 0, and the whole first packet present.
Verdict probe_openvpn(Bytes prefix);

// anyprot: anything at all, once at least one byte has arrived.
Verdict probe_anyprot(Bytes prefix);

}  // namespace splicer::probe
