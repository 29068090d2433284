#include "http/head_rewrite.h"

#include <algorithm>
#include <array>
#include <span>

#include "http/request_target.h"

namespace splicer::http {
namespace {

// ASCII case-insensitive order, so names are looked up as sent, without a lowercase copy.
bool less_ignoring_case(std::string_view a, std::string_view b) {
    return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
        return ascii_lower(x) < ascii_lower(y);
    });
}

bool is_any_of(std::string_view name, std::span<const std::string_view> names) {
    return std::any_of(names.begin(), names.end(), [&](std::string_view candidate) {
        return equals_ignoring_case(name, candidate);
    });
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
    out.append(name).append(": ").append(value).append("\r\n");
}

// Set by splicer from what it saw, whatever the client sent.
constexpr std::array<std::string_view, 2> kStatedBySplicer = {"x-forwarded-proto",
                                                              "x-forwarded-host"};

// What a backend or a framework behind it may take for the client's address, the scheme or
// the host and port it was reached on, other than X-Forwarded-For (appended to) and the two
// above (replaced). At the edge nobody before splicer can vouch for them.
constexpr std::array<std::string_view, 14> kForwardingFields = {
    "forwarded",           // RFC 7239
    "x-real-ip",           // nginx's realip module, many apps
    "x-forwarded-port",    // Django, Rack, Spring
    "x-forwarded-server",  // Apache mod_proxy
    "x-forwarded-ssl",     // Rack: "on" means https
    "x-forwarded-scheme",  // Rack
    "x-url-scheme",        // Rack
    "x-forwarded-prefix",  // Spring, Traefik
    "client-ip",           // Rails' remote_ip
    "x-client-ip",
    "true-client-ip",       // Akamai, Cloudflare Enterprise
    "x-cluster-client-ip",  // Rack, Zeus
    "cf-connecting-ip",     // Cloudflare
    "fastly-client-ip",     // Fastly
};

}  // namespace

HopByHop::HopByHop(const MessageHead& head, bool keep_upgrade) : keep_upgrade_(keep_upgrade) {
    for (const Header& header : head.headers) {
        if (!equals_ignoring_case(header.name, "connection")) {
            continue;
        }
        std::string_view rest = header.value;
        while (!rest.empty()) {
            const std::size_t comma = rest.find(',');
            const std::string_view token = trim_whitespace(rest.substr(0, comma));
            if (!token.empty()) {
                named_.push_back(token);
            }
            rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
        }
    }
    std::sort(named_.begin(), named_.end(), less_ignoring_case);
}

bool HopByHop::drops(std::string_view name) const {
    static constexpr std::array<std::string_view, 5> kAlways = {"connection", "keep-alive", "te",
                                                                "trailer", "proxy-connection"};
    static constexpr std::array<std::string_view, 2> kFraming = {"transfer-encoding",
                                                                 "content-length"};
    if (is_any_of(name, kAlways)) {
        return true;
    }
    if (equals_ignoring_case(name, "upgrade")) {
        return !keep_upgrade_;
    }
    // Framing fields stay: the body is forwarded with the framing it arrived with.
    if (is_any_of(name, kFraming)) {
        return false;
    }
    return std::binary_search(named_.begin(), named_.end(), name, less_ignoring_case);
}

bool is_forwarding_field(std::string_view name) {
    return is_any_of(name, kForwardingFields);
}

std::string upstream_request_head(const MessageHead& request, const UpstreamOptions& options) {
    const HopByHop hop_by_hop(request, request.upgrade);
    // The parser let through one valid authority at most (absolute-form target, else Host).
    const std::string_view host = request_authority(request);
    std::string out;
    out.reserve(512);
    out.append(request.method).append(" ").append(origin_form(request.target)).append(" ");
    out.append(version_text(request)).append("\r\n");
    std::string forwarded_for;
    bool host_sent = false;
    for (const Header& header : request.headers) {
        if (hop_by_hop.drops(header.name)) {
            continue;
        }
        if (equals_ignoring_case(header.name, "x-forwarded-for")) {
            forwarded_for.append(forwarded_for.empty() ? "" : ", ").append(header.value);
            continue;
        }
        // The client cannot vouch for these: splicer states what it saw, or nothing.
        if (is_any_of(header.name, kStatedBySplicer) || is_forwarding_field(header.name)) {
            continue;
        }
        if (options.drop_expect && equals_ignoring_case(header.name, "expect")) {
            continue;
        }
        if (equals_ignoring_case(header.name, "host")) {
            append_field(out, header.name, options.set_host.value_or(std::string(host)));
            host_sent = true;
            continue;
        }
        append_field(out, header.name, header.value);
    }
    if (!host_sent && (options.set_host || !host.empty())) {
        // HTTP/1.0 without Host: the absolute-form authority, or set_host, still goes up.
        append_field(out, "Host", options.set_host.value_or(std::string(host)));
    }
    forwarded_for.append(forwarded_for.empty() ? "" : ", ").append(options.client_address);
    append_field(out, "X-Forwarded-For", forwarded_for);
    append_field(out, "X-Forwarded-Proto", options.forwarded_proto);
    if (!host.empty()) {
        append_field(out, "X-Forwarded-Host", host);
    }
    if (request.upgrade) {
        append_field(out, "Connection", "upgrade");
    } else if (!options.keep_alive) {
        append_field(out, "Connection", "close");
    }
    out.append("\r\n");
    return out;
}

std::string client_response_head(const MessageHead& response, bool close_client) {
    const bool switching = response.status == 101;
    const HopByHop hop_by_hop(response, switching);
    std::string out;
    out.reserve(512);
    out.append("HTTP/1.1 ").append(std::to_string(response.status)).append(" ");
    out.append(response.reason).append("\r\n");
    for (const Header& header : response.headers) {
        if (!hop_by_hop.drops(header.name)) {
            append_field(out, header.name, header.value);
        }
    }
    if (switching) {
        append_field(out, "Connection", "upgrade");
    } else if (close_client) {
        append_field(out, "Connection", "close");
    }
    out.append("\r\n");
    return out;
}

}  // namespace splicer::http
