// describe(): the effective configuration as `splicer check` prints it, one item a line, rules
// and routes numbered in the order they are tried (0-based, as in diagnostics' setting paths).

#include <string>
#include <string_view>
#include <vector>

#include "config/values.h"
#include "splicer/config.h"

namespace splicer::config {
namespace {

std::string list(const std::vector<std::string>& items) {
    std::string out = "[";
    for (std::size_t i = 0; i < items.size(); ++i) {
        out += (i == 0 ? "" : ", ") + items[i];
    }
    return out + "]";
}

// " (line N)", or nothing for an item that was not read from a file.
std::string line_suffix(int line) {
    return line > 0 ? " (line " + std::to_string(line) + ")" : std::string();
}

std::string describe_rule(std::size_t index, const Rule& rule, bool transparent) {
    std::string out = "rule " + std::to_string(index) + ": " +
                      (rule.name.empty() ? std::string(to_string(rule.probe)) : rule.name);
    if (!rule.sni_hostnames.empty()) {
        out += " sni=" + list(rule.sni_hostnames);
    }
    if (!rule.alpn_protocols.empty()) {
        out += " alpn=" + list(rule.alpn_protocols);
    }
    if (!rule.regex_patterns.empty()) {
        out += " regex=" + list(rule.regex_patterns);
    }
    out += rule.terminate ? std::string(" -> terminate (https routes)")
                          : " -> " + to_string(rule.backend);
    if (rule.proxy_protocol != 0) {
        out += " proxyprotocol=" + std::to_string(rule.proxy_protocol);
    }
    if (transparent) {
        out += " transparent";
    }
    return out + line_suffix(rule.line);
}

// `section` is "http" or "https"; an https backend shows its scheme and how it is verified.
std::string describe_route(std::string_view section, std::size_t index, const HttpRoute& route) {
    std::string out =
        std::string(section) + " route " + std::to_string(index) + ": hosts=" + list(route.hosts);
    if (route.path_prefix != "/") {
        out += " path=" + route.path_prefix;
    }
    if (route.backend_scheme == BackendScheme::https) {
        out += " -> https://" + to_string(route.backend);
        out += route.verify ? " verify=" + route.ca_file.value_or("system CA store")
                            : std::string(" verify=off");
    } else {
        out += " -> " + to_string(route.backend);
    }
    if (route.set_host) {
        out += " set_host=" + *route.set_host;
    }
    if (route.redirect_https) {
        out += " redirect_https";
    }
    if (route.max_body_size) {
        out += " max_body_size=" + detail::format_size(*route.max_body_size);
    }
    if (route.proxy_protocol != 0) {
        out += " proxyprotocol=" + std::to_string(route.proxy_protocol);
    }
    if (route.transparent) {
        out += " transparent";
    }
    return out + line_suffix(route.line);
}

// "0.0.0.0:443 max_connections=100 proxyprotocol trusted_proxies=10.0.0.0/8,::1 (line 3)".
std::string describe_listener(const Listener& listener) {
    std::string out =
        to_string(listener.address) +
        (listener.max_connections ? " max_connections=" + std::to_string(*listener.max_connections)
                                  : std::string());
    if (listener.proxy_protocol) {
        out += " proxyprotocol";
        std::string networks;
        for (const Network& network : listener.trusted_proxies) {
            networks += (networks.empty() ? "" : ",") + network.text;
        }
        out += " trusted_proxies=" + (networks.empty() ? std::string("any") : networks);
    }
    return out + line_suffix(listener.line);
}

std::string describe_https(const HttpsConfig& https) {
    std::string out;
    for (std::size_t i = 0; i < https.certificates.size(); ++i) {
        const CertificateConfig& entry = https.certificates[i];
        out += "https certificate " + std::to_string(i) + ": " + entry.certificate + " key " +
               entry.key;
        if (!entry.ocsp_response.empty()) {
            out += " ocsp_response " + entry.ocsp_response;
        }
        out += (i == 0 ? " (default)" : "") + line_suffix(entry.line) + "\n";
    }
    out +=
        "https ticket key rotation: " + std::to_string(https.ticket_key_rotation.count()) + " s\n";
    out += "https max body size: " + detail::format_size(https.limits.max_body_size) + "\n";
    const config::HttpLimits& limits = https.limits;
    out += "https timeouts: header " + std::to_string(limits.header_timeout.count()) +
           " s, idle " + std::to_string(limits.idle_timeout.count()) + " s, backend " +
           std::to_string(limits.backend_timeout.count()) + " s\n";
    out += "https backend keepalive: " + std::to_string(limits.keepalive_connections) +
           " idle per backend, " + std::to_string(limits.keepalive_timeout.count()) + " s\n";
    for (std::size_t i = 0; i < https.routes.size(); ++i) {
        out += describe_route("https", i, https.routes[i]) + "\n";
    }
    return out;
}

}  // namespace

std::string describe(const Config& config) {
    std::string out;
    out += "splice mode: " + std::string(to_string(config.splice_mode)) + "\n";
    out += "probe timeout: " + std::to_string(config.probe_timeout.count()) + " ms\n";
    if (config.on_timeout_rule && *config.on_timeout_rule < config.rules.size()) {
        const std::size_t index = *config.on_timeout_rule;
        out +=
            "on-timeout: rule " + std::to_string(index) + " (" + config.rules[index].name + ")\n";
    } else {
        out += "on-timeout: close\n";
    }
    out += "connect timeout: " + std::to_string(config.connect_timeout.count()) + " s\n";
    out += "stall timeout: " +
           (config.stall_timeout.count() > 0
                ? std::to_string(config.stall_timeout.count()) + " s"
                : std::string("off")) +
           "\n";
    if (config.user) {
        out += "user: " + *config.user + "\n";
    }
    out += std::string("transparent: ") +
           (config.transparent ? "on (rules marked transparent connect from the client's address)"
                               : "off") +
           "\n";
    out += "max connections: " +
           (config.max_connections
                ? std::to_string(*config.max_connections)
                : std::to_string(kDefaultMaxConnections) + " (default, fitted to the fd limit)") +
           "\n";
    out += "max probing: " + std::to_string(config.max_probing) + "\n";
    out += "max connections per client: " + std::to_string(config.max_connections_per_client) +
           " (under pressure; a client is an IPv4 /" +
           std::to_string(config.client_ipv4_prefix_length) + " or an IPv6 /" +
           std::to_string(config.client_ipv6_prefix_length) + ")\n";
    out += "workers: " +
           (config.workers ? std::to_string(*config.workers)
                           : std::string("one per CPU splicer may run on (default)")) +
           "\n";
    out += "log buffer: " + detail::format_size(config.log_buffer_size) + "\n";
    out += "max pipes (splice plane): " +
           (config.max_pipes ? std::to_string(*config.max_pipes)
                             : std::string("a quarter of max connections (default)")) +
           "\n";
    for (const Listener& listener : config.listeners) {
        out += "listen " + describe_listener(listener) + "\n";
    }
    out += config.metrics ? "metrics listen " + to_string(config.metrics->address) + "/metrics" +
                                line_suffix(config.metrics->line) + "\n"
                          : std::string("metrics: off\n");
    for (std::size_t i = 0; i < config.rules.size(); ++i) {
        out += describe_rule(i, config.rules[i], transparent_for(config, config.rules[i])) + "\n";
    }
    if (config.http) {
        const HttpConfig& http = *config.http;
        for (const Listener& listener : http.listeners) {
            out += "http listen " + describe_listener(listener) + "\n";
        }
        out += "http max body size: " + detail::format_size(http.limits.max_body_size) + "\n";
        out += "http timeouts: header " + std::to_string(http.limits.header_timeout.count()) +
               " s, idle " + std::to_string(http.limits.idle_timeout.count()) + " s, backend " +
               std::to_string(http.limits.backend_timeout.count()) + " s\n";
        out += "http backend keepalive: " + std::to_string(http.limits.keepalive_connections) +
               " idle per backend, " + std::to_string(http.limits.keepalive_timeout.count()) +
               " s\n";
        for (std::size_t i = 0; i < http.routes.size(); ++i) {
            out += describe_route("http", i, http.routes[i]) + "\n";
        }
    }
    if (config.https) {
        out += describe_https(*config.https);
    }
    return out;
}

}  // namespace splicer::config
