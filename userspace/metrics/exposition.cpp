#include "metrics/exposition.h"

#include <cstdio>
#include <cstring>
#include <map>

namespace splicer::metrics {
namespace {

constexpr const char* kDirections[2] = {"client_to_backend", "backend_to_client"};

Family counter(std::string_view name, std::string_view help, std::uint64_t value) {
    return {.name = name,
            .help = help,
            .type = "counter",
            .labelled = false,
            .samples = {Sample{.labels = {}, .value = value}}};
}

Family labelled(std::string_view name, std::string_view help, std::string_view type = "counter") {
    return {.name = name, .help = help, .type = type, .labelled = true, .samples = {}};
}

// A C string field of the pinned struct, read without trusting its terminator.
std::string field_text(const char* field, std::size_t bytes) {
    return {field, strnlen(field, bytes)};
}

}  // namespace

std::string_view to_string(PlaneLabel plane) {
    switch (plane) {
        case PlaneLabel::sockmap:
            return "sockmap";
        case PlaneLabel::splice:
            return "splice";
        case PlaneLabel::copy:
            return "copy";
        case PlaneLabel::http:
            return "http";
    }
    return "unknown";
}

std::vector<Family> families(const DaemonCounters& c, std::string_view version) {
    std::vector<Family> out;
    out.push_back(counter("splicer_connections_accepted_total",
                          "Connections accepted on every listener (port 443 style and port 80).",
                          c.accepted));

    Family refused = labelled("splicer_connections_refused_total",
                              "Connections closed at once because a limit was reached, by the "
                              "setting that refused them.");
    const std::uint64_t narrower =
        c.refused_per_listener + c.refused_per_client + c.refused_probing;
    refused.samples = {
        {{{"limit", "max_connections"}}, c.refused >= narrower ? c.refused - narrower : 0},
        {{{"limit", "listen.max_connections"}}, c.refused_per_listener},
        {{{"limit", "max_connections_per_client"}}, c.refused_per_client},
        {{{"limit", "max_probing"}}, c.refused_probing}};
    out.push_back(std::move(refused));

    Family routed = labelled("splicer_connections_routed_total",
                             "Connections routed to a backend, by rule name, protocol and plane.");
    Family failures = labelled("splicer_backend_failures_total",
                               "Backend connections that failed (refused, timed out), by rule.");
    std::map<std::string, std::uint64_t> failures_by_rule;
    const std::size_t series =
        c.rule_series_count < kMaxRuleSeries ? c.rule_series_count : kMaxRuleSeries;
    for (std::size_t i = 0; i < series; ++i) {
        const RuleSeries& entry = c.rule_series[i];
        const std::string rule = field_text(entry.rule, sizeof(entry.rule));
        const std::string protocol = field_text(entry.protocol, sizeof(entry.protocol));
        for (std::size_t plane = 0; plane < kPlaneLabels; ++plane) {
            if (entry.routed[plane] == 0) {
                continue;  // a plane this daemon does not use for that rule
            }
            routed.samples.push_back(
                {{{"rule", rule},
                  {"protocol", protocol},
                  {"plane", std::string(to_string(static_cast<PlaneLabel>(plane)))}},
                 entry.routed[plane]});
        }
        failures_by_rule[rule] += entry.backend_failures;
    }
    for (const auto& [rule, count] : failures_by_rule) {
        failures.samples.push_back({{{"rule", rule}}, count});
    }
    out.push_back(std::move(routed));

    Family active =
        labelled("splicer_connections_active",
                 "Connections held now (probing, connecting, spliced or proxying).", "gauge");
    active.labelled = false;
    active.samples = {{{}, c.active}};
    out.push_back(std::move(active));
    out.push_back(counter("splicer_connections_closed_total", "Connections closed.", c.closed));
    out.push_back(counter("splicer_probe_timeouts_total",
                          "Connections still unidentified at the probe timeout.",
                          c.probe_timeouts));
    out.push_back(
        counter("splicer_no_route_total", "Connections no rule matched (closed).", c.no_route));
    out.push_back(std::move(failures));

    Family bytes = labelled("splicer_bytes_total",
                            "Payload bytes delivered, by direction and plane (sockmap: the "
                            "verdict program's kernel counters).");
    for (std::size_t plane = 0; plane < kPlaneLabels; ++plane) {
        for (std::size_t direction = 0; direction < 2; ++direction) {
            bytes.samples.push_back(
                {{{"direction", kDirections[direction]},
                  {"plane", std::string(to_string(static_cast<PlaneLabel>(plane)))}},
                 c.bytes[plane][direction]});
        }
    }
    out.push_back(std::move(bytes));

    Family http = labelled("splicer_http_requests_total",
                           "Port 80 requests answered, by the status sent to the client.");
    for (std::size_t i = 0; i < kHttpStatusSlots; ++i) {
        if (c.http_responses[i] > 0) {
            http.samples.push_back(
                {{{"code", std::to_string(kFirstHttpStatus + static_cast<int>(i))}},
                 c.http_responses[i]});
        }
    }
    out.push_back(std::move(http));

    out.push_back(counter("splicer_sockmap_fallbacks_total",
                          "Pairs the sockhash refused, served by the copy plane instead.",
                          c.sockmap_fallbacks));
    Family reloads = labelled("splicer_reloads_total", "SIGHUP reloads, by result.");
    reloads.samples = {{{{"result", "ok"}}, c.reloads_ok},
                       {{{"result", "failed"}}, c.reloads_failed}};
    out.push_back(std::move(reloads));
    Family upgrades =
        labelled("splicer_upgrades_total", "SIGUSR2 upgrades to a new binary, by result.");
    upgrades.samples = {{{{"result", "ok"}}, c.upgrades_ok},
                        {{{"result", "failed"}}, c.upgrades_failed}};
    out.push_back(std::move(upgrades));
    out.push_back(counter("splicer_accept_errors_total",
                          "Failed accepts (EMFILE, ENFILE, ENOBUFS, ...), each backed off.",
                          c.accept_errors));
    out.push_back(counter("splicer_pipe_shortages_total",
                          "Splice plane rounds copied through a buffer: every pipe was taken.",
                          c.pipe_shortages));
    out.push_back(counter("splicer_sockmap_source_wakeups_total",
                          "Sockmap plane: completions of the watch on a spliced source.",
                          c.sockmap_source_wakeups));
    out.push_back(counter("splicer_sockmap_empty_wakeups_total",
                          "Sockmap plane: source wake-ups that found nothing to read.",
                          c.sockmap_empty_wakeups));
    out.push_back(counter("splicer_sockmap_eof_checks_total",
                          "Sockmap plane: looks at an EOF waiting for its sink to take the bytes "
                          "before it.",
                          c.sockmap_eof_checks));
    out.push_back(counter("splicer_urgent_bytes_dropped_total",
                          "TCP urgent bytes (MSG_OOB) not delivered.", c.urgent_bytes_dropped));
    out.push_back(counter("splicer_stalled_total",
                          "Spliced pairs ended after stall_timeout with bytes nobody took.",
                          c.stalled));
    out.push_back(counter("splicer_readers_stopped_total",
                          "Spliced sinks braked because their reader took nothing for 1 s.",
                          c.readers_stopped));
    out.push_back(counter("splicer_readers_resumed_total",
                          "Braked sinks whose reader took 1 MiB again (the brake came off).",
                          c.readers_resumed));
    out.push_back(counter("splicer_backend_pool_hits_total",
                          "HTTP requests sent on an idle pooled backend connection.",
                          c.backend_pool_hits));
    out.push_back(counter("splicer_backend_pool_misses_total",
                          "HTTP requests that opened a backend connection while reuse was on.",
                          c.backend_pool_misses));
    out.push_back(counter("splicer_backend_pool_idle_closed_total",
                          "Idle pooled backend connections closed (backend closed, timeout, full).",
                          c.backend_pool_idle_closed));
    out.push_back(counter("splicer_backend_pool_retries_total",
                          "HTTP requests retried on a new connection after a reused one failed.",
                          c.backend_pool_retries));
    Family proxy = labelled("splicer_proxy_header_rejected_total",
                            "Connections closed on a proxyprotocol listener before a valid "
                            "PROXY header from a trusted peer, by reason.");
    static constexpr const char* kProxyReasons[kProxyRejections] = {"missing", "malformed",
                                                                    "untrusted", "timeout"};
    for (std::size_t i = 0; i < kProxyRejections; ++i) {
        proxy.samples.push_back({{{"reason", kProxyReasons[i]}}, c.proxy_header_rejected[i]});
    }
    out.push_back(std::move(proxy));
    out.push_back(counter("splicer_log_lines_dropped_total",
                          "Log lines dropped because stderr took none and the buffer was full.",
                          c.log_dropped));

    Family build = labelled("splicer_build_info", "Version and data plane; always 1.", "gauge");
    build.samples = {{{{"version", std::string(version)},
                       {"plane", std::string(to_string(static_cast<PlaneLabel>(c.plane)))}},
                      1}};
    out.push_back(std::move(build));
    return out;
}

std::string escape_label_value(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (const char ch : value) {
        if (ch == '\\') {
            out += "\\\\";
        } else if (ch == '"') {
            out += "\\\"";
        } else if (ch == '\n') {
            out += "\\n";
        } else {
            out += ch;
        }
    }
    return out;
}

std::string escape_json(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (const char ch : value) {
        const auto byte = static_cast<unsigned char>(ch);
        if (ch == '\\' || ch == '"') {
            out += '\\';
            out += ch;
        } else if (byte < 0x20 || byte == 0x7f) {
            char escaped[8];
            std::snprintf(escaped, sizeof(escaped), "\\u%04x", byte);
            out += escaped;
        } else {
            out += ch;
        }
    }
    return out;
}

std::string prometheus_text(const std::vector<Family>& families) {
    std::string out;
    for (const Family& family : families) {
        out += "# HELP ";
        out += family.name;
        out += ' ';
        out += family.help;  // static text without backslashes or newlines
        out += "\n# TYPE ";
        out += family.name;
        out += ' ';
        out += family.type;
        out += '\n';
        for (const Sample& sample : family.samples) {
            out += family.name;
            if (!sample.labels.empty()) {
                out += '{';
                for (std::size_t i = 0; i < sample.labels.size(); ++i) {
                    if (i > 0) {
                        out += ',';
                    }
                    out += sample.labels[i].first;
                    out += "=\"";
                    out += escape_label_value(sample.labels[i].second);
                    out += '"';
                }
                out += '}';
            }
            out += ' ';
            out += std::to_string(sample.value);
            out += '\n';
        }
    }
    return out;
}

std::string json_text(const std::vector<Family>& families, std::string_view extra) {
    std::string out = "{";
    for (std::size_t f = 0; f < families.size(); ++f) {
        const Family& family = families[f];
        out += f > 0 ? ",\n \"" : "\n \"";
        out += family.name;
        out += "\": ";
        if (!family.labelled) {
            out += std::to_string(family.samples.empty() ? 0 : family.samples.front().value);
            continue;
        }
        out += '[';
        for (std::size_t s = 0; s < family.samples.size(); ++s) {
            const Sample& sample = family.samples[s];
            out += s > 0 ? ", {" : "{";
            for (const auto& [name, value] : sample.labels) {
                out += '"';
                out += name;
                out += "\": \"";
                out += escape_json(value);
                out += "\", ";
            }
            out += "\"value\": " + std::to_string(sample.value) + "}";
        }
        out += ']';
    }
    if (!extra.empty()) {
        out += ",\n \"kernel\": ";
        out += extra;
    }
    out += "\n}\n";
    return out;
}

}  // namespace splicer::metrics
