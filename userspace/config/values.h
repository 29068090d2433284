#pragma once
// The kinds of value the config file uses in several places (ports, hosts, host patterns,
// sizes, backend addresses), checked and normalised on plain strings. No libconfig here, so
// each is tested on its own and the loader only maps libconfig types onto these.

#include <cstdint>
#include <string>
#include <string_view>

#include "splicer/config.h"
#include "splicer/result.h"

namespace splicer::config::detail {

// Every duration setting is bounded, so a typo (an extra zero or two) is caught here and the
// conversions to milliseconds or nanoseconds downstream cannot overflow.
inline constexpr long long kMaxSeconds = 86400;

// A port written as a string ("443", as sslh writes it). Digits only, 1..65535: service names
// ("https") would need /etc/services, and config loading does no I/O.
Result<std::uint16_t> parse_port(std::string_view text);
// A port written as an integer.
Result<std::uint16_t> check_port(long long value);

// A `host:` value: an IPv4 literal, an IPv6 literal ("::1", or "[::1]": the brackets are
// dropped) or a DNS name. Returns it as Endpoint::host keeps it.
Result<std::string> parse_host(std::string_view text);

// An sni_hostnames entry: lowercased, one trailing dot dropped; "*." is allowed only as the
// whole first label ("*.example.com").
Result<std::string> parse_sni_hostname(std::string_view text);

// An http route `hosts` entry: like an SNI name, plus "*" alone (any host). No port: routes
// match the Host header with its port stripped.
Result<std::string> parse_http_host_pattern(std::string_view text);

// "20M", "512K", "1G" (powers of 1024) or plain digits (bytes); at least 1.
Result<std::uint64_t> parse_size(std::string_view text);
// 20971520 -> "20M"; sizes that are not a whole multiple stay in bytes.
std::string format_size(std::uint64_t bytes);

// "127.0.0.1:5080", "[::1]:8080", "backend.local:8080". An IPv6 address needs brackets,
// since without them the port cannot be told apart from the address.
Result<Endpoint> parse_backend(std::string_view text);

// A regex_patterns entry: compiles with PCRE2 as the regex probe will (same options), so a bad
// pattern is reported with its config line at load time rather than when the probe starts.
Result<void> check_regex(std::string_view pattern);

// True for an IPv6 literal (optionally with a %zone), as Endpoint::host keeps it.
bool is_ipv6_literal(std::string_view host);

}  // namespace splicer::config::detail
