// Names of the config enums as the file spells them, endpoints and diagnostics as text.

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "splicer/config.h"

namespace splicer::config {
namespace {

// One table per enum, so to_string and from_string cannot disagree.
constexpr std::array<std::pair<SpliceMode, std::string_view>, 4> kSpliceModes{{
    {SpliceMode::automatic, "auto"},
    {SpliceMode::sockmap, "sockmap"},
    {SpliceMode::splice, "splice"},
    {SpliceMode::copy, "copy"},
}};

constexpr std::array<std::pair<ProbeKind, std::string_view>, 7> kProbeKinds{{
    {ProbeKind::tls, "tls"},
    {ProbeKind::xmpp, "xmpp"},
    {ProbeKind::ssh, "ssh"},
    {ProbeKind::http, "http"},
    {ProbeKind::openvpn, "openvpn"},
    {ProbeKind::regex, "regex"},
    {ProbeKind::anyprot, "anyprot"},
}};

template <typename Enum, std::size_t N>
std::string_view name_of(const std::array<std::pair<Enum, std::string_view>, N>& table,
                         Enum value) {
    for (const auto& [candidate, name] : table) {
        if (candidate == value) {
            return name;
        }
    }
    return "?";  // only reachable through a value cast from outside the enum's range
}

template <typename Enum, std::size_t N>
std::optional<Enum> value_of(const std::array<std::pair<Enum, std::string_view>, N>& table,
                             std::string_view name) {
    for (const auto& [value, candidate] : table) {
        if (candidate == name) {
            return value;
        }
    }
    return std::nullopt;
}

}  // namespace

std::string_view to_string(SpliceMode mode) {
    return name_of(kSpliceModes, mode);
}

std::string_view to_string(ProbeKind kind) {
    return name_of(kProbeKinds, kind);
}

std::optional<SpliceMode> splice_mode_from_string(std::string_view name) {
    return value_of(kSpliceModes, name);
}

std::optional<ProbeKind> probe_kind_from_string(std::string_view name) {
    return value_of(kProbeKinds, name);
}

std::string to_string(const Endpoint& endpoint) {
    // Brackets keep an IPv6 address apart from its port; no name or IPv4 address has a ':'.
    if (endpoint.host.find(':') != std::string::npos) {
        return "[" + endpoint.host + "]:" + std::to_string(endpoint.port);
    }
    return endpoint.host + ":" + std::to_string(endpoint.port);
}

std::string format(const Diagnostic& diagnostic, std::string_view source_name) {
    std::string out(source_name);
    if (diagnostic.line > 0) {
        out += ":" + std::to_string(diagnostic.line);
    }
    out += diagnostic.severity == Diagnostic::Severity::error ? ": error: " : ": notice: ";
    // A syntax error belongs to no setting; its line says where it is.
    if (!diagnostic.setting.empty()) {
        out += diagnostic.setting + ": ";
    }
    out += diagnostic.message;
    return out;
}

}  // namespace splicer::config
