#include "http/route_match.h"

#include <algorithm>
#include <cctype>

#include "http/message_head.h"
#include "splicer/router.h"

namespace splicer::http {
namespace {

// Higher is more specific; -1 when the pattern does not match.
long host_specificity(std::string_view pattern, std::string_view host) {
    if (pattern == "*") {
        return 0;  // also a request without Host (HTTP/1.0)
    }
    if (!route::hostname_matches(pattern, host)) {
        return -1;
    }
    if (pattern.starts_with("*.")) {
        return static_cast<long>(pattern.size());
    }
    return 1L << 20;  // exact names beat any wildcard
}

}  // namespace

std::string host_without_port(std::string_view host) {
    if (host.starts_with("[")) {
        const std::size_t close = host.find(']');
        return route::normalize_hostname(host.substr(0, close == std::string_view::npos
                                                            ? host.size()
                                                            : close + 1));
    }
    const std::size_t colon = host.rfind(':');
    if (colon != std::string_view::npos &&
        std::all_of(host.begin() + static_cast<long>(colon) + 1, host.end(),
                    [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; })) {
        host = host.substr(0, colon);
    }
    return route::normalize_hostname(host);
}

std::optional<std::size_t> match_route(const std::vector<config::HttpRoute>& routes,
                                       std::string_view host, std::string_view target) {
    const std::string_view authority = target_authority(target);
    const std::string name = host_without_port(authority.empty() ? host : authority);
    const std::string path = target_path(target);
    long best_host = -1;
    for (const config::HttpRoute& route : routes) {
        for (const std::string& pattern : route.hosts) {
            best_host = std::max(best_host, host_specificity(pattern, name));
        }
    }
    if (best_host < 0) {
        return std::nullopt;
    }
    std::optional<std::size_t> best;
    std::size_t best_prefix = 0;
    for (std::size_t i = 0; i < routes.size(); ++i) {
        const config::HttpRoute& route = routes[i];
        const bool names_host = std::any_of(
            route.hosts.begin(), route.hosts.end(),
            [&](const std::string& pattern) { return host_specificity(pattern, name) == best_host; });
        if (!names_host || !path.starts_with(route.path_prefix)) {
            continue;
        }
        if (!best || route.path_prefix.size() > best_prefix) {
            best = i;
            best_prefix = route.path_prefix.size();
        }
    }
    return best;
}

}  // namespace splicer::http
