#include "metrics/rule_series.h"

#include <cstring>

namespace splicer::metrics {

void copy_label(char* out, std::size_t bytes, std::string_view text) {
    std::size_t length = text.size() < bytes ? text.size() : bytes - 1;
    // Back off to a character boundary: a UTF-8 continuation byte is 10xxxxxx.
    while (length < text.size() && length > 0 &&
           (static_cast<unsigned char>(text[length]) & 0xc0U) == 0x80U) {
        --length;
    }
    std::memcpy(out, text.data(), length);
    std::memset(out + length, 0, bytes - length);
}

std::uint32_t RuleSeriesTable::series_for(std::string_view rule, std::string_view protocol) {
    RuleSeries key{};
    copy_label(key.rule, sizeof(key.rule), rule);
    copy_label(key.protocol, sizeof(key.protocol), protocol);
    for (std::size_t i = 0; i < series_.size(); ++i) {
        if (std::memcmp(series_[i].rule, key.rule, sizeof(key.rule)) == 0 &&
            std::memcmp(series_[i].protocol, key.protocol, sizeof(key.protocol)) == 0) {
            return static_cast<std::uint32_t>(i);
        }
    }
    if (series_.size() + 1 >= kMaxRuleSeries) {
        // The last place is "_other", for every name past the bound.
        if (series_.size() + 1 == kMaxRuleSeries) {
            RuleSeries other{};
            copy_label(other.rule, sizeof(other.rule), "_other");
            series_.push_back(other);
        }
        return static_cast<std::uint32_t>(kMaxRuleSeries - 1);
    }
    series_.push_back(key);
    return static_cast<std::uint32_t>(series_.size() - 1);
}

void RuleSeriesTable::bind(const config::Config& config) {
    // Built aside, then swapped: a lookup never sees a half-built table.
    std::vector<std::uint32_t> rules;
    rules.reserve(config.rules.size());
    for (const config::Rule& rule : config.rules) {
        rules.push_back(series_for(rule.name + " -> " + config::to_string(rule.backend),
                                   config::to_string(rule.probe)));
    }
    std::vector<std::uint32_t> routes;
    if (config.http) {
        routes.reserve(config.http->routes.size());
        for (const config::HttpRoute& route : config.http->routes) {
            routes.push_back(
                series_for("http route -> " + config::to_string(route.backend), "http"));
        }
    }
    std::vector<std::uint32_t> https_routes;
    if (config.https) {
        https_routes.reserve(config.https->routes.size());
        for (const config::HttpRoute& route : config.https->routes) {
            https_routes.push_back(
                series_for("https route -> " + config::to_string(route.backend), "https"));
        }
    }
    by_rule_ = std::move(rules);
    by_route_ = std::move(routes);
    by_https_route_ = std::move(https_routes);
}

void RuleSeriesTable::count_routed(std::uint32_t series, PlaneLabel plane) {
    ++series_.at(series).routed[static_cast<std::size_t>(plane)];
}

void RuleSeriesTable::count_backend_failure(std::uint32_t series) {
    ++series_.at(series).backend_failures;
}

void RuleSeriesTable::copy_to(DaemonCounters& counters) const {
    if (!series_.empty()) {  // memcpy from a null data() is undefined, even for 0 bytes
        std::memcpy(counters.rule_series, series_.data(), series_.size() * sizeof(RuleSeries));
    }
    counters.rule_series_count = static_cast<__u32>(series_.size());
}

}  // namespace splicer::metrics
