#include "http/request_target.h"

#include <arpa/inet.h>

#include <array>
#include <charconv>

namespace splicer::http {
namespace {

constexpr std::array<std::string_view, 2> kSchemes = {"http://", "https://"};

// The scheme prefix of an absolute-form target, "" when there is none.
std::string_view scheme_of(std::string_view target) {
    for (const std::string_view scheme : kSchemes) {
        if (target.size() >= scheme.size() &&
            equals_ignoring_case(target.substr(0, scheme.size()), scheme)) {
            return target.substr(0, scheme.size());
        }
    }
    return {};
}

bool is_reg_name_char(char c) {
    constexpr std::string_view kOthers = "-._~!$&'()*+,;=";
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           kOthers.find(c) != std::string_view::npos;
}

bool is_valid_port(std::string_view port) {
    if (port.size() > 5) {
        return false;
    }
    unsigned value = 0;
    const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
    // An empty port is allowed by RFC 3986 ("host:"), and means the default.
    return port.empty() ||
           (error == std::errc{} && end == port.data() + port.size() && value <= 65535);
}

bool is_ipv6_literal(std::string_view literal) {
    // "[" IPv6address "]"; inet_pton takes a NUL-terminated string of at most 45 characters.
    if (literal.size() < 4 || literal.size() > 2 + 45 || literal.front() != '[' ||
        literal.back() != ']') {
        return false;
    }
    const std::string address(literal.substr(1, literal.size() - 2));
    std::array<unsigned char, 16> bytes{};
    return inet_pton(AF_INET6, address.c_str(), bytes.data()) == 1;
}

}  // namespace

std::string_view target_authority(std::string_view target) {
    const std::string_view scheme = scheme_of(target);
    if (scheme.empty()) {
        return {};
    }
    const std::string_view rest = target.substr(scheme.size());
    return rest.substr(0, rest.find_first_of("/?#"));
}

bool is_absolute_form(std::string_view target) {
    return !scheme_of(target).empty();
}

std::string origin_form(std::string_view target) {
    const std::string_view scheme = scheme_of(target);
    if (scheme.empty()) {
        return std::string(target);
    }
    const std::string_view rest = target.substr(scheme.size() + target_authority(target).size());
    return rest.starts_with("/") ? std::string(rest) : "/" + std::string(rest);
}

std::string target_path(std::string_view target) {
    const std::string origin = origin_form(target);
    return origin.substr(0, origin.find('?'));
}

bool is_valid_authority(std::string_view authority) {
    std::string_view host = authority;
    std::string_view port;
    bool has_port = false;
    if (authority.starts_with("[")) {
        const std::size_t close = authority.find(']');
        if (close == std::string_view::npos) {
            return false;
        }
        host = authority.substr(0, close + 1);
        const std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') {
                return false;
            }
            has_port = true;
            port = after.substr(1);
        }
        if (!is_ipv6_literal(host)) {
            return false;
        }
    } else {
        const std::size_t colon = authority.find(':');
        if (colon != std::string_view::npos) {
            host = authority.substr(0, colon);
            has_port = true;
            port = authority.substr(colon + 1);
        }
        for (const char c : host) {
            if (!is_reg_name_char(c)) {
                return false;
            }
        }
    }
    return !has_port || is_valid_port(port);
}

std::string_view trim_whitespace(std::string_view value) {
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
        value.remove_prefix(1);
    }
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
        value.remove_suffix(1);
    }
    return value;
}

std::string_view request_authority(const MessageHead& request) {
    if (is_absolute_form(request.target)) {
        return target_authority(request.target);
    }
    const Header* host = request.find("host");
    return host != nullptr ? trim_whitespace(host->value) : std::string_view{};
}

}  // namespace splicer::http
