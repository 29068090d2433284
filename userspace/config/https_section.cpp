// The `https` group: TLS termination for the rules marked `terminate` (README "TLS
// termination"). Only paths are read here: config loading does no I/O, so whether the files
// exist, parse and match is checked where they are read (tls/certificate_check.h for `splicer
// check`, tls/certificate_store.h for the daemon), with the lines kept here.

#include <string>
#include <string_view>
#include <utility>

#include "config/reader.h"
#include "config/values.h"
#include "splicer/config.h"

namespace splicer::config::detail {
namespace {

using libconfig::Setting;

// Ticket keys are rotated at most once a minute (more often, resumption would rarely work:
// a ticket outlives two rotations only) and at least once a day (kMaxSeconds): past that a
// stolen key decrypts too much recorded traffic (Mozilla's guideline rotates daily).
constexpr long long kMinTicketRotation = 60;

// A file path setting: a non-empty string.
std::optional<std::string> read_path(const Setting& setting, Diagnostics& diagnostics) {
    std::optional<std::string> path = read_string(setting, diagnostics);
    if (path && path->empty()) {
        diagnostics.error(setting, "empty: expected a file path");
        return std::nullopt;
    }
    return path;
}

std::optional<CertificateConfig> read_certificate(const Setting& group, Diagnostics& diagnostics) {
    const std::size_t errors_before = diagnostics.error_count();
    CertificateConfig entry;
    entry.path = path_of(group);
    entry.line = line_of(group);
    for (int i = 0; i < group.getLength(); ++i) {
        const Setting& member = group[i];
        const std::string_view key = member.getName();
        if (key == "certificate") {
            entry.certificate = read_path(member, diagnostics).value_or("");
            entry.certificate_line = line_of(member);
        } else if (key == "key") {
            entry.key = read_path(member, diagnostics).value_or("");
            entry.key_line = line_of(member);
        } else if (key == "ocsp_response") {
            entry.ocsp_response = read_path(member, diagnostics).value_or("");
            entry.ocsp_response_line = line_of(member);
        } else {
            check_known(member, {"certificate", "key", "ocsp_response"}, diagnostics);
        }
    }
    require_member(group, "certificate", diagnostics);
    require_member(group, "key", diagnostics);
    if (diagnostics.error_count() != errors_before) {
        return std::nullopt;
    }
    return entry;
}

void read_certificates(const Setting& setting, HttpsConfig& https, Diagnostics& diagnostics) {
    std::optional<std::vector<const Setting*>> groups =
        read_nonempty_groups(setting, "certificate", diagnostics);
    if (!groups) {
        return;
    }
    for (const Setting* group : *groups) {
        if (auto entry = read_certificate(*group, diagnostics)) {
            https.certificates.push_back(std::move(*entry));
        }
    }
}

void read_ticket_key_rotation(const Setting& setting, HttpsConfig& https,
                              Diagnostics& diagnostics) {
    const auto value = read_integer(setting, diagnostics);
    if (!value) {
        return;
    }
    if (*value < kMinTicketRotation || *value > kMaxSeconds) {
        diagnostics.error(setting, "bad duration " + std::to_string(*value) + ": expected " +
                                       std::to_string(kMinTicketRotation) + ".." +
                                       std::to_string(kMaxSeconds) + " seconds");
        return;
    }
    https.ticket_key_rotation = std::chrono::seconds{*value};
}

}  // namespace

std::optional<HttpsConfig> read_https_section(const Setting& https, Diagnostics& diagnostics) {
    const std::size_t errors_before = diagnostics.error_count();
    HttpsConfig config;
    config.line = line_of(https);
    for (int i = 0; i < https.getLength(); ++i) {
        const Setting& member = https[i];
        const std::string_view key = member.getName();
        if (key == "certificates") {
            read_certificates(member, config, diagnostics);
        } else if (key == "routes") {
            read_http_routes(member, RouteKind::https, config.routes, diagnostics);
        } else if (key == "ticket_key_rotation") {
            read_ticket_key_rotation(member, config, diagnostics);
        } else if (read_http_limit(member, config.limits, diagnostics)) {
            continue;
        } else {
            check_known(member,
                        {"certificates", "routes", "ticket_key_rotation", "max_body_size",
                         "header_timeout", "idle_timeout", "backend_timeout",
                         "keepalive_connections", "keepalive_timeout"},
                        diagnostics);
        }
    }
    if (find_member(https, "certificates") == nullptr) {
        diagnostics.error_at(member_path(https, "certificates"), line_of(https),
                             "missing required setting: TLS termination needs a certificate");
    }
    if (diagnostics.error_count() != errors_before) {
        return std::nullopt;
    }
    return config;
}

}  // namespace splicer::config::detail
