#include "config/values.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <limits>

#include "probe/regex_probe.h"

namespace splicer::config::detail {
namespace {

// DNS limits (RFC 1035, section 2.3.4): 63 octets a label, 253 characters for a name written
// without its trailing dot.
constexpr std::size_t kMaxLabel = 63;
constexpr std::size_t kMaxName = 253;

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

char to_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lowercase(std::string_view text) {
    std::string out(text);
    for (char& c : out) {
        c = to_lower(c);
    }
    return out;
}

bool all_digits(std::string_view text) {
    if (text.empty()) {
        return false;
    }
    for (const char c : text) {
        if (!is_digit(c)) {
            return false;
        }
    }
    return true;
}

std::string quoted(std::string_view text) {
    return "\"" + std::string(text) + "\"";
}

bool is_ipv4_literal(std::string_view text) {
    const std::string copy(text);
    in_addr address{};
    return inet_pton(AF_INET, copy.c_str(), &address) == 1;
}

// A DNS name without a trailing dot: labels of letters, digits, '-' and '_' (underscores
// occur in internal names, and resolvers accept them). A name whose last label is all digits
// is an IPv4 address gone wrong ("10.0.0"), not a name: resolvers would read it as one.
Result<void> check_dns_name(std::string_view name) {
    if (name.empty()) {
        return Error{"empty name"};
    }
    if (name.size() > kMaxName) {
        return Error{"name longer than 253 characters"};
    }
    std::size_t label_start = 0;
    while (true) {
        const std::size_t dot = name.find('.', label_start);
        const std::size_t label_end = dot == std::string_view::npos ? name.size() : dot;
        const std::string_view label = name.substr(label_start, label_end - label_start);
        if (label.empty()) {
            return Error{"empty label in " + quoted(name)};
        }
        if (label.size() > kMaxLabel) {
            return Error{"label longer than 63 characters in " + quoted(name)};
        }
        for (const char c : label) {
            if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '_') {
                return Error{"character '" + std::string(1, c) + "' not allowed in " +
                             quoted(name)};
            }
        }
        if (dot == std::string_view::npos) {
            if (all_digits(label)) {
                return Error{quoted(name) + " is neither an IPv4 address nor a name"};
            }
            return {};
        }
        label_start = dot + 1;
    }
}

// Shared by SNI names and HTTP host patterns: lowercase, one trailing dot dropped, "*." only
// as the whole first label.
Result<std::string> parse_name_pattern(std::string_view text) {
    if (text.empty()) {
        return Error{"empty name"};
    }
    std::string name = lowercase(text);
    if (name.back() == '.') {
        name.pop_back();
    }
    std::string_view rest = name;
    if (rest.starts_with("*.")) {
        rest.remove_prefix(2);
    }
    if (rest.find('*') != std::string_view::npos) {
        return Error{"bad wildcard in " + quoted(text) +
                     ": \"*\" is allowed only as a whole first label, as in \"*.example.com\""};
    }
    if (auto checked = check_dns_name(rest); !checked) {
        return checked.error();
    }
    return name;
}

}  // namespace

Result<std::uint16_t> check_port(long long value) {
    if (value < 1 || value > std::numeric_limits<std::uint16_t>::max()) {
        return Error{"bad port " + std::to_string(value) + ": expected 1..65535"};
    }
    return static_cast<std::uint16_t>(value);
}

Result<std::uint16_t> parse_port(std::string_view text) {
    // At most 5 digits (after leading zeros), so the conversion below cannot overflow.
    std::string_view digits = text;
    while (digits.size() > 1 && digits.front() == '0') {
        digits.remove_prefix(1);
    }
    if (!all_digits(digits) || digits.size() > 5) {
        return Error{"bad port " + quoted(text) + ": expected a number 1..65535"};
    }
    long long value = 0;
    for (const char c : digits) {
        value = value * 10 + (c - '0');
    }
    if (value < 1 || value > std::numeric_limits<std::uint16_t>::max()) {
        return Error{"bad port " + quoted(text) + ": expected a number 1..65535"};
    }
    return static_cast<std::uint16_t>(value);
}

Result<void> check_regex(std::string_view pattern) {
    // The same compile as the regex probe's, so a pattern accepted here also loads there.
    auto compiled = probe::RegexProbe::compile({std::string(pattern)});
    if (!compiled) {
        return Error{"bad " + compiled.error().message};
    }
    return {};
}

bool is_ipv6_literal(std::string_view host) {
    const std::size_t percent = host.find('%');
    std::string address(host.substr(0, percent));
    if (percent != std::string_view::npos) {
        // A zone ("fe80::1%eth0") is an interface name: letters, digits, a few punctuation.
        const std::string_view zone = host.substr(percent + 1);
        if (zone.empty()) {
            return false;
        }
        for (const char c : zone) {
            if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '_' && c != '.') {
                return false;
            }
        }
    }
    in6_addr parsed{};
    return inet_pton(AF_INET6, address.c_str(), &parsed) == 1;
}

Result<std::string> parse_host(std::string_view text) {
    if (text.empty()) {
        return Error{"empty host"};
    }
    if (text.front() == '[') {
        if (text.size() < 2 || text.back() != ']') {
            return Error{"bad host " + quoted(text) + ": missing ']'"};
        }
        const std::string_view inner = text.substr(1, text.size() - 2);
        if (!is_ipv6_literal(inner)) {
            return Error{"bad host " + quoted(text) + ": brackets hold an IPv6 address"};
        }
        return std::string(inner);
    }
    if (text.find(':') != std::string_view::npos) {
        if (!is_ipv6_literal(text)) {
            return Error{"bad host " + quoted(text) + ": not an IPv6 address"};
        }
        return std::string(text);
    }
    if (is_ipv4_literal(text)) {
        return std::string(text);
    }
    std::string_view name = text;
    if (name.back() == '.') {
        name.remove_suffix(1);  // a fully qualified name ("host.example.com.") is fine
    }
    if (auto checked = check_dns_name(name); !checked) {
        return Error{"bad host " + quoted(text) + ": " + checked.error().message};
    }
    return std::string(text);
}

Result<std::string> parse_sni_hostname(std::string_view text) {
    if (text == "*") {
        return Error{"\"*\" alone is not an SNI name: leave sni_hostnames out to match any"};
    }
    if (is_ipv4_literal(text) || text.find(':') != std::string_view::npos) {
        return Error{"bad name " + quoted(text) + ": SNI carries names, never addresses"};
    }
    return parse_name_pattern(text);
}

Result<std::string> parse_http_host_pattern(std::string_view text) {
    if (text == "*") {
        return std::string("*");
    }
    if (text.find(':') != std::string_view::npos) {
        return Error{"bad host " + quoted(text) +
                     ": routes match the Host header without its port"};
    }
    if (is_ipv4_literal(text)) {
        return std::string(text);  // requests addressed to the IP itself
    }
    return parse_name_pattern(text);
}

Result<std::uint64_t> parse_size(std::string_view text) {
    const auto bad = [&] {
        return Error{"bad size " + quoted(text) +
                     ": expected bytes, or a number with K, M or G (powers of 1024)"};
    };
    std::string_view digits = text;
    unsigned shift = 0;
    if (!digits.empty()) {
        switch (to_lower(digits.back())) {
            case 'k':
                shift = 10;
                break;
            case 'm':
                shift = 20;
                break;
            case 'g':
                shift = 30;
                break;
            default:
                break;
        }
        if (shift != 0) {
            digits.remove_suffix(1);
        }
    }
    if (!all_digits(digits)) {
        return bad();
    }
    constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
    std::uint64_t value = 0;
    for (const char c : digits) {
        const auto digit = static_cast<std::uint64_t>(c - '0');
        if (value > (kMax - digit) / 10) {
            return Error{"size " + quoted(text) + " is too large"};
        }
        value = value * 10 + digit;
    }
    if (value > (kMax >> shift)) {
        return Error{"size " + quoted(text) + " is too large"};
    }
    value <<= shift;
    if (value == 0) {
        return Error{"bad size " + quoted(text) + ": must be at least 1 byte"};
    }
    return value;
}

std::string format_size(std::uint64_t bytes) {
    constexpr std::array<std::pair<unsigned, char>, 3> kUnits{{{30, 'G'}, {20, 'M'}, {10, 'K'}}};
    for (const auto& [shift, suffix] : kUnits) {
        const std::uint64_t unit = std::uint64_t{1} << shift;
        if (bytes >= unit && bytes % unit == 0) {
            return std::to_string(bytes / unit) + suffix;
        }
    }
    return std::to_string(bytes);
}

Result<Endpoint> parse_backend(std::string_view text) {
    const auto bad = [&](std::string_view why) {
        return Error{"bad backend " + quoted(text) + ": " + std::string(why)};
    };
    std::string_view host;
    std::string_view port;
    if (text.starts_with("[")) {
        const std::size_t close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            return bad("expected [IPV6]:PORT");
        }
        host = text.substr(0, close + 1);
        port = text.substr(close + 2);
    } else {
        const std::size_t colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            return bad("expected HOST:PORT");
        }
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (host.find(':') != std::string_view::npos) {
            return bad("write an IPv6 address in brackets, as in [::1]:8080");
        }
    }
    auto parsed_host = parse_host(host);
    if (!parsed_host) {
        return bad(parsed_host.error().message);
    }
    auto parsed_port = parse_port(port);
    if (!parsed_port) {
        return bad(parsed_port.error().message);
    }
    return Endpoint{std::move(parsed_host.value()), parsed_port.value()};
}

}  // namespace splicer::config::detail
