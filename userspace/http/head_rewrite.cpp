#include "http/head_rewrite.h"

#include <array>

namespace splicer::http {
namespace {

std::string_view trim(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
        text.remove_prefix(1);
    }
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
        text.remove_suffix(1);
    }
    return text;
}

// True when a Connection field of `head` lists `name` as one of its comma-separated tokens.
bool connection_names(const MessageHead& head, std::string_view name) {
    for (const Header& header : head.headers) {
        if (!equals_ignoring_case(header.name, "connection")) {
            continue;
        }
        std::string_view rest = header.value;
        while (!rest.empty()) {
            const std::size_t comma = rest.find(',');
            if (equals_ignoring_case(trim(rest.substr(0, comma)), name)) {
                return true;
            }
            rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
        }
    }
    return false;
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
    out.append(name).append(": ").append(value).append("\r\n");
}

}  // namespace

bool is_hop_by_hop(const MessageHead& head, std::string_view name, bool keep_upgrade) {
    static constexpr std::array<std::string_view, 5> kAlways = {
        "connection", "keep-alive", "te", "trailer", "proxy-connection"};
    for (const std::string_view hop : kAlways) {
        if (equals_ignoring_case(name, hop)) {
            return true;
        }
    }
    if (equals_ignoring_case(name, "upgrade")) {
        return !keep_upgrade;
    }
    // Framing fields stay: the body is forwarded with the framing it arrived with.
    if (equals_ignoring_case(name, "transfer-encoding") ||
        equals_ignoring_case(name, "content-length")) {
        return false;
    }
    return connection_names(head, name);
}

std::string upstream_request_head(const MessageHead& request, const UpstreamOptions& options) {
    std::string out;
    out.reserve(512);
    out.append(request.method).append(" ").append(request.target).append(" ");
    out.append(version_text(request)).append("\r\n");
    std::string forwarded_for;
    std::string original_host;
    for (const Header& header : request.headers) {
        if (is_hop_by_hop(request, header.name, request.upgrade)) {
            continue;
        }
        if (equals_ignoring_case(header.name, "x-forwarded-for")) {
            forwarded_for += (forwarded_for.empty() ? "" : ", ") + header.value;
            continue;
        }
        // The client cannot vouch for these: splicer states what it saw.
        if (equals_ignoring_case(header.name, "x-forwarded-proto") ||
            equals_ignoring_case(header.name, "x-forwarded-host")) {
            continue;
        }
        if (options.drop_expect && equals_ignoring_case(header.name, "expect")) {
            continue;
        }
        if (equals_ignoring_case(header.name, "host")) {
            original_host = header.value;
            if (options.set_host) {
                append_field(out, header.name, *options.set_host);
                continue;
            }
        }
        out.append(header.name).append(": ").append(header.value).append("\r\n");
    }
    if (original_host.empty() && options.set_host) {
        append_field(out, "Host", *options.set_host);
    }
    forwarded_for += (forwarded_for.empty() ? "" : ", ") + options.client_address;
    append_field(out, "X-Forwarded-For", forwarded_for);
    append_field(out, "X-Forwarded-Proto", "http");
    if (!original_host.empty()) {
        append_field(out, "X-Forwarded-Host", original_host);
    }
    append_field(out, "Connection", request.upgrade ? "upgrade" : "close");
    out.append("\r\n");
    return out;
}

std::string client_response_head(const MessageHead& response, bool close_client) {
    const bool switching = response.status == 101;
    std::string out;
    out.reserve(512);
    out.append("HTTP/1.1 ").append(std::to_string(response.status)).append(" ");
    out.append(response.reason).append("\r\n");
    for (const Header& header : response.headers) {
        if (!is_hop_by_hop(response, header.name, switching)) {
            out.append(header.name).append(": ").append(header.value).append("\r\n");
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
