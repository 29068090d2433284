// The `http` group: splicer's own port-80 reverse proxy settings (DESIGN.md, "Port 80").
// Validated here in full, so a config that passes `splicer check` is one the proxy can use.
// The route reader is shared with the `https` section (https_section.cpp).

#include <string>
#include <string_view>
#include <utility>

#include "config/reader.h"
#include "config/values.h"
#include "splicer/config.h"

namespace splicer::config::detail {
namespace {

using libconfig::Setting;

// Printable ASCII without space: what may go into a header value splicer writes itself, so a
// set_host with a CR or LF cannot smuggle a header into the upstream request.
bool is_header_token(std::string_view text) {
    if (text.empty()) {
        return false;
    }
    for (const char c : text) {
        if (c <= ' ' || c >= 0x7f) {
            return false;
        }
    }
    return true;
}

void read_route_hosts(const Setting& setting, HttpRoute& route, Diagnostics& diagnostics) {
    std::optional<std::vector<std::string>> hosts = read_string_list(setting, diagnostics);
    if (!hosts) {
        return;
    }
    if (hosts->empty()) {
        diagnostics.error(setting, "empty: a route needs at least one host (\"*\" for any)");
        return;
    }
    for (std::size_t i = 0; i < hosts->size(); ++i) {
        Result<std::string> host = parse_http_host_pattern((*hosts)[i]);
        if (!host) {
            diagnostics.error(setting[static_cast<int>(i)], host.error().message);
            continue;
        }
        route.hosts.push_back(std::move(host.value()));
    }
}

// "host:port", "http://host:port" or, on an https route, "https://host:port". No path: the
// request's own path goes up unchanged (nginx's proxy_pass without a URI part).
void read_route_backend(const Setting& member, RouteKind kind, HttpRoute& route,
                        Diagnostics& diagnostics) {
    std::optional<std::string> text = read_string(member, diagnostics);
    if (!text) {
        return;
    }
    std::string_view address = *text;
    if (address.starts_with("https://")) {
        if (kind != RouteKind::https) {
            diagnostics.error(member,
                              "an https:// backend is for https routes only (the port "
                              "80 proxy connects to its backends in plain HTTP)");
            return;
        }
        route.backend_scheme = BackendScheme::https;
        address.remove_prefix(std::string_view("https://").size());
    } else if (address.starts_with("http://")) {
        address.remove_prefix(std::string_view("http://").size());
    }
    Result<Endpoint> backend = parse_backend(address);
    if (backend) {
        route.backend = std::move(backend.value());
    } else {
        diagnostics.error(member, backend.error().message);
    }
}

// verify and ca_file say how to check a TLS backend: on a plain one they would be silently
// meaningless, so they are refused there.
void check_tls_options(const Setting& group, const HttpRoute& route, Diagnostics& diagnostics) {
    if (route.backend_scheme == BackendScheme::https) {
        if (!route.verify && route.ca_file) {
            diagnostics.notice(*find_member(group, "ca_file"),
                               "unused: verify is false, so no CA is consulted");
        }
        return;
    }
    for (const char* name : {"verify", "ca_file"}) {
        if (const Setting* member = find_member(group, name)) {
            diagnostics.error(*member,
                              "only with an https:// backend (this route's backend "
                              "is plain HTTP)");
        }
    }
}

std::optional<HttpRoute> read_route(const Setting& group, RouteKind kind,
                                    Diagnostics& diagnostics) {
    const std::size_t errors_before = diagnostics.error_count();
    HttpRoute route;
    route.line = line_of(group);
    for (int i = 0; i < group.getLength(); ++i) {
        const Setting& member = group[i];
        const std::string_view key = member.getName();
        if (key == "hosts") {
            read_route_hosts(member, route, diagnostics);
        } else if (key == "path_prefix") {
            if (auto prefix = read_string(member, diagnostics)) {
                if (!prefix->starts_with("/") || !is_header_token(*prefix)) {
                    diagnostics.error(member, "bad path prefix \"" + *prefix +
                                                  "\": expected a path starting with \"/\"");
                } else {
                    route.path_prefix = std::move(*prefix);
                }
            }
        } else if (key == "backend") {
            read_route_backend(member, kind, route, diagnostics);
        } else if (kind == RouteKind::https && key == "verify") {
            if (auto verify = read_bool(member, diagnostics)) {
                route.verify = *verify;
            }
        } else if (kind == RouteKind::https && key == "ca_file") {
            if (auto file = read_string(member, diagnostics)) {
                if (file->empty()) {
                    diagnostics.error(member,
                                      "empty: a CA file path (PEM), or leave it out "
                                      "for the system store");
                } else {
                    route.ca_file = std::move(*file);
                    route.ca_file_line = line_of(member);
                }
            }
        } else if (key == "set_host") {
            if (auto host = read_string(member, diagnostics)) {
                if (!is_header_token(*host)) {
                    diagnostics.error(member, "bad Host value \"" + *host +
                                                  "\": expected a name, optionally with :port");
                } else {
                    route.set_host = std::move(*host);
                }
            }
        } else if (key == "redirect_https") {
            if (auto redirect = read_bool(member, diagnostics)) {
                route.redirect_https = *redirect;
            }
        } else if (key == "max_body_size") {
            route.max_body_size = read_size(member, diagnostics);
        } else if (key == "proxyprotocol") {
            if (auto version = read_proxy_protocol(member, diagnostics)) {
                route.proxy_protocol = *version;
            }
        } else if (key == "transparent") {
            if (auto transparent = read_bool(member, diagnostics)) {
                route.transparent = *transparent;
            }
        } else if (kind == RouteKind::https) {
            check_known(member,
                        {"hosts", "path_prefix", "backend", "set_host", "redirect_https",
                         "max_body_size", "proxyprotocol", "transparent", "verify", "ca_file"},
                        diagnostics);
        } else {
            check_known(member,
                        {"hosts", "path_prefix", "backend", "set_host", "redirect_https",
                         "max_body_size", "proxyprotocol", "transparent"},
                        diagnostics);
        }
    }
    require_member(group, "hosts", diagnostics);
    require_member(group, "backend", diagnostics);
    if (kind == RouteKind::https && diagnostics.error_count() == errors_before) {
        check_tls_options(group, route, diagnostics);
    }
    if (diagnostics.error_count() != errors_before) {
        return std::nullopt;
    }
    return route;
}

void read_http_listen(const Setting& setting, HttpConfig& http, Diagnostics& diagnostics) {
    std::optional<std::vector<const Setting*>> groups =
        read_nonempty_groups(setting, "listener", diagnostics);
    if (!groups) {
        return;
    }
    for (const Setting* group : *groups) {
        if (auto listener = read_listener(*group, false, diagnostics)) {
            http.listeners.push_back(std::move(*listener));
        }
    }
}

}  // namespace

void read_http_routes(const Setting& setting, RouteKind kind, std::vector<HttpRoute>& routes,
                      Diagnostics& diagnostics) {
    std::optional<std::vector<const Setting*>> groups = read_group_list(setting, diagnostics);
    if (!groups) {
        return;
    }
    for (const Setting* group : *groups) {
        if (auto route = read_route(*group, kind, diagnostics)) {
            routes.push_back(std::move(*route));
        }
    }
}

bool read_http_limit(const Setting& member, HttpLimits& limits, Diagnostics& diagnostics) {
    const std::string_view key = member.getName();
    if (key == "max_body_size") {
        if (auto size = read_size(member, diagnostics)) {
            limits.max_body_size = *size;
        }
        return true;
    }
    if (key == "keepalive_connections") {
        if (auto count = read_integer(member, diagnostics)) {
            if (*count < 0 || *count > kMaxKeepaliveConnections) {
                diagnostics.error(member, "out of range: expected 0.." +
                                              std::to_string(kMaxKeepaliveConnections) +
                                              " (0: no backend connection reuse)");
            } else {
                limits.keepalive_connections = static_cast<std::uint32_t>(*count);
            }
        }
        return true;
    }
    std::chrono::seconds* timeout = key == "header_timeout"      ? &limits.header_timeout
                                    : key == "idle_timeout"      ? &limits.idle_timeout
                                    : key == "backend_timeout"   ? &limits.backend_timeout
                                    : key == "keepalive_timeout" ? &limits.keepalive_timeout
                                                                 : nullptr;
    if (timeout == nullptr) {
        return false;
    }
    if (auto seconds = read_seconds(member, diagnostics)) {
        *timeout = *seconds;
    }
    return true;
}

std::optional<HttpConfig> read_http_section(const Setting& http, Diagnostics& diagnostics) {
    const std::size_t errors_before = diagnostics.error_count();
    HttpConfig config;
    for (int i = 0; i < http.getLength(); ++i) {
        const Setting& member = http[i];
        const std::string_view key = member.getName();
        if (key == "listen") {
            read_http_listen(member, config, diagnostics);
        } else if (key == "routes") {
            read_http_routes(member, RouteKind::http, config.routes, diagnostics);
        } else if (read_http_limit(member, config.limits, diagnostics)) {
            continue;
        } else {
            check_known(member,
                        {"listen", "routes", "max_body_size", "header_timeout", "idle_timeout",
                         "backend_timeout", "keepalive_connections", "keepalive_timeout"},
                        diagnostics);
        }
    }
    if (find_member(http, "listen") == nullptr) {
        diagnostics.error_at(member_path(http, "listen"), line_of(http),
                             "missing required setting: the http section needs a listener");
    }
    // Listener and route indices stay those of the file only when nothing was dropped, and
    // the section is used only then anyway: the whole load fails on any error.
    if (diagnostics.error_count() != errors_before) {
        return std::nullopt;
    }
    return config;
}

}  // namespace splicer::config::detail
