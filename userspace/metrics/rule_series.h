#pragma once
// The per-rule series of splicer_connections_routed_total{rule,protocol,plane} and
// splicer_backend_failures_total{rule}, kept by the event loop. A rule's `name` is its
// protocol (sslh's schema: "tls", "xmpp", ...), so several rules share it; what tells them
// apart for an administrator is where they lead. A series is therefore named
// "NAME -> BACKEND" ("tls -> 127.0.0.1:5443", as `splicer check` prints the rule), protocol
// NAME; port 80 routes are "http route -> BACKEND", protocol "http", and the https section's
// (terminated TLS) "https route -> BACKEND", protocol "https". Rules with the same name
// and backend share a series.
//
// A SIGHUP may add, remove, reorder or re-point rules. Counters never go back (Prometheus
// reads a drop as a restart): series are kept for the daemon's life, a removed rule's series
// keeps its last value, a rule kept (same name and backend) goes on counting in its series
// wherever it moved in the list, and a new or re-pointed rule starts a new series at 0. The
// table is bounded (kMaxRuleSeries): series past it are counted under rule "_other".

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "splicer/config.h"
#include "splicer/daemon_counters.h"

namespace splicer::metrics {

class RuleSeriesTable {
public:
    // Maps each rule and http route of `config` (the one now in force) to its series.
    void bind(const config::Config& config);

    // The series of rule `rule` / http route `route` of the config bound last. Connections
    // keep this index: it stays valid across later binds, unlike the rule's index.
    [[nodiscard]] std::uint32_t for_rule(std::size_t rule) const { return by_rule_.at(rule); }
    [[nodiscard]] std::uint32_t for_route(std::size_t route) const { return by_route_.at(route); }
    // The series of https route `route` (config.https->routes, TLS terminated by splicer).
    [[nodiscard]] std::uint32_t for_https_route(std::size_t route) const {
        return by_https_route_.at(route);
    }

    void count_routed(std::uint32_t series, PlaneLabel plane);
    void count_backend_failure(std::uint32_t series);

    // Copies every series into `counters` (rule_series, rule_series_count).
    void copy_to(DaemonCounters& counters) const;

    [[nodiscard]] std::size_t size() const { return series_.size(); }

private:
    std::uint32_t series_for(std::string_view rule, std::string_view protocol);

    std::vector<RuleSeries> series_;
    std::vector<std::uint32_t> by_rule_;
    std::vector<std::uint32_t> by_route_;
    std::vector<std::uint32_t> by_https_route_;
};

// `text` cut to fit `bytes` - 1 bytes without splitting a UTF-8 character, NUL-terminated.
void copy_label(char* out, std::size_t bytes, std::string_view text);

}  // namespace splicer::metrics
