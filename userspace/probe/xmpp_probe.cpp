// Plain XMPP (RFC 6120 section 4.7): the client opens with an optional XML declaration and a
// <stream:stream ...> start tag declaring the jabber:client (or, between servers,
// jabber:server) namespace. sslh looks for "jabber" in the first 50 bytes and gives up after;
// real clients put `to`, `from`, `xml:lang` and `version` first, so the namespace may come
// later. This probe follows the start tag itself, up to kMaxXmppHeader bytes.

#include "probe/byte_text.h"
#include "splicer/probe.h"

namespace splicer::probe {
namespace {

bool is_xml_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::size_t skip_xml_space(std::string_view text, std::size_t pos) {
    while (pos < text.size() && is_xml_space(text[pos])) {
        ++pos;
    }
    return pos;
}

bool ends_with(std::string_view text, std::string_view suffix) {
    return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// Where the start tag's attributes begin, or npos with `verdict` set when undecided/wrong.
std::size_t find_stream_tag_body(std::string_view text, Verdict& verdict) {
    constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";
    std::size_t pos = 0;
    if (compare_prefix(text, kByteOrderMark) != PrefixState::differs) {
        if (text.size() < kByteOrderMark.size()) {
            verdict = Verdict::need_more;
            return std::string_view::npos;
        }
        pos = kByteOrderMark.size();
    }
    pos = skip_xml_space(text, pos);
    const std::string_view rest = text.substr(pos);
    switch (compare_prefix(rest, "<?xml")) {
        case PrefixState::partial:
            // "", "<", "<?x", ...: the declaration or the stream tag may still follow.
            verdict = Verdict::need_more;
            return std::string_view::npos;
        case PrefixState::complete: {
            const std::size_t end = text.find("?>", pos);
            if (end == std::string_view::npos) {
                verdict = Verdict::need_more;
                return std::string_view::npos;
            }
            pos = skip_xml_space(text, end + 2);
            break;
        }
        case PrefixState::differs: break;
    }
    if (pos >= text.size()) {
        verdict = Verdict::need_more;
        return std::string_view::npos;
    }
    if (text[pos] != '<') {
        verdict = Verdict::no_match;
        return std::string_view::npos;
    }
    // The element name: "stream:stream" in practice, any prefix allowed by XML namespaces.
    std::size_t name_end = pos + 1;
    while (name_end < text.size() && !is_xml_space(text[name_end]) && text[name_end] != '>' &&
           text[name_end] != '/') {
        ++name_end;
    }
    if (name_end == text.size()) {
        verdict = Verdict::need_more;
        return std::string_view::npos;
    }
    const std::string_view name = text.substr(pos + 1, name_end - pos - 1);
    if (name != "stream" && !ends_with(name, ":stream")) {
        verdict = Verdict::no_match;
        return std::string_view::npos;
    }
    return name_end;
}

}  // namespace

Verdict probe_xmpp(Bytes prefix) {
    const std::string_view text = as_text(prefix).substr(0, kMaxXmppHeader);
    Verdict verdict = Verdict::no_match;
    const std::size_t body = find_stream_tag_body(text, verdict);
    if (body == std::string_view::npos) {
        // Undecided after kMaxXmppHeader bytes is no longer plausible.
        return verdict == Verdict::need_more && text.size() >= kMaxXmppHeader ? Verdict::no_match
                                                                               : verdict;
    }
    // Attributes up to the end of the start tag ('>' cannot appear inside a quoted value
    // unescaped in a well-formed stream header, so the first one ends the tag).
    const std::size_t tag_end = text.find('>', body);
    const std::string_view attributes = text.substr(body, tag_end == std::string_view::npos
                                                              ? std::string_view::npos
                                                              : tag_end - body);
    for (const std::string_view ns : {"'jabber:client'", "\"jabber:client\"", "'jabber:server'",
                                      "\"jabber:server\""}) {
        if (attributes.find(ns) != std::string_view::npos) {
            return Verdict::match;
        }
    }
    if (tag_end != std::string_view::npos || text.size() >= kMaxXmppHeader) {
        return Verdict::no_match;
    }
    return Verdict::need_more;
}

}  // namespace splicer::probe
