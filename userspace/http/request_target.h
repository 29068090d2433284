#pragma once
// Where a request is going: the forms of a request-target (RFC 9112 s. 3.2) and the
// authority a request names, by its absolute-form target or else its Host field. Pure
// functions over strings; the parser validates with them, routing and rewriting read with
// them, so the three always agree on one authority.

#include <string>
#include <string_view>

#include "http/message_head.h"

namespace splicer::http {

// The authority of an absolute-form target ("http://host:port/path" -> "host:port"; the
// scheme http or https, any case), "" for origin-form and asterisk-form.
std::string_view target_authority(std::string_view target);

// True for an absolute-form target (http or https scheme), whatever its authority holds.
bool is_absolute_form(std::string_view target);

// A request-target in origin-form: "http://h/a?b" -> "/a?b", "http://h" -> "/"; an
// origin-form (or asterisk-form) target unchanged.
std::string origin_form(std::string_view target);

// The path of a request-target (before '?'), for origin-form and absolute-form alike.
std::string target_path(std::string_view target);

// RFC 3986 s. 3.2.2-3.2.3: uri-host [ ":" port ], where uri-host is a reg-name (letters,
// digits, "-._~" and the sub-delims "!$&'()*+,;="), an IPv4 address (a reg-name too) or an
// IPv6 literal in brackets, and port is up to five digits no greater than 65535. Stricter
// than RFC 3986 on two points: no percent-encoding (no registered name needs it: a DNS name
// is letters, digits and hyphens, IDNs travel as punycode) and no IPvFuture literal. Every
// character that could end a host in a URL ("/?#@\" and spaces) is refused. Empty is valid
// here (the grammar allows it); callers decide whether they need a name.
bool is_valid_authority(std::string_view authority);

// Field value without the optional whitespace around it (llhttp keeps the trailing one).
std::string_view trim_whitespace(std::string_view value);

// The authority the request is for: its absolute-form target's, else its Host field's
// (the first; the parser refuses two), else "" (HTTP/1.0 without Host).
std::string_view request_authority(const MessageHead& request);

}  // namespace splicer::http
