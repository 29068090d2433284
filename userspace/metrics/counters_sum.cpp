#include "metrics/counters_sum.h"

#include <algorithm>
#include <cstring>
#include <string_view>

namespace splicer::metrics {
namespace {

bool same_series(const RuleSeries& a, const RuleSeries& b) {
    return std::strncmp(a.rule, b.rule, kRuleNameBytes) == 0 &&
           std::strncmp(a.protocol, b.protocol, kProtocolNameBytes) == 0;
}

void add_series(DaemonCounters& total, const RuleSeries& part) {
    const std::size_t count = std::min<std::size_t>(total.rule_series_count, kMaxRuleSeries);
    for (std::size_t i = 0; i < count; ++i) {
        RuleSeries& series = total.rule_series[i];
        if (same_series(series, part)) {
            for (std::size_t plane = 0; plane < kPlaneLabels; ++plane) {
                series.routed[plane] += part.routed[plane];
            }
            series.backend_failures += part.backend_failures;
            return;
        }
    }
    if (count < kMaxRuleSeries) {
        total.rule_series[count] = part;
        total.rule_series_count = static_cast<__u32>(count + 1);
        return;
    }
    // Every slot is taken by names another worker met: count it in the last ("_other").
    RuleSeries& other = total.rule_series[kMaxRuleSeries - 1];
    for (std::size_t plane = 0; plane < kPlaneLabels; ++plane) {
        other.routed[plane] += part.routed[plane];
    }
    other.backend_failures += part.backend_failures;
}

}  // namespace

// A field added to DaemonCounters must be added up here too: this fails until it is.
static_assert(sizeof(DaemonCounters) ==
                  136 + 64 + 16 + 8 + 4000 + 120 * 128 + 32 + 16 + 32 + 16 + 16 + 8,
              "DaemonCounters changed: sum the new field in add_counters");

void add_counters(DaemonCounters& total, const DaemonCounters& part) {
    total.accepted += part.accepted;
    total.active += part.active;
    total.routed += part.routed;
    total.no_route += part.no_route;
    total.probe_timeouts += part.probe_timeouts;
    total.backend_failures += part.backend_failures;
    total.closed += part.closed;
    total.refused += part.refused;
    total.sockmap_fallbacks += part.sockmap_fallbacks;
    total.accept_errors += part.accept_errors;
    total.refused_per_listener += part.refused_per_listener;
    total.refused_per_client += part.refused_per_client;
    total.refused_probing += part.refused_probing;
    total.pipe_shortages += part.pipe_shortages;
    total.sockmap_source_wakeups += part.sockmap_source_wakeups;
    total.sockmap_empty_wakeups += part.sockmap_empty_wakeups;
    total.sockmap_eof_checks += part.sockmap_eof_checks;
    total.urgent_bytes_dropped += part.urgent_bytes_dropped;
    total.log_dropped = std::max(total.log_dropped, part.log_dropped);
    total.stalled += part.stalled;
    for (std::size_t plane = 0; plane < kPlaneLabels; ++plane) {
        for (std::size_t direction = 0; direction < 2; ++direction) {
            total.bytes[plane][direction] += part.bytes[plane][direction];
        }
    }
    total.reloads_ok += part.reloads_ok;
    total.reloads_failed += part.reloads_failed;
    total.plane = part.plane;
    for (std::size_t i = 0; i < kHttpStatusSlots; ++i) {
        total.http_responses[i] += part.http_responses[i];
    }
    const std::size_t series = std::min<std::size_t>(part.rule_series_count, kMaxRuleSeries);
    for (std::size_t i = 0; i < series; ++i) {
        add_series(total, part.rule_series[i]);
    }
    for (std::size_t i = 0; i < kProxyRejections; ++i) {
        total.proxy_header_rejected[i] += part.proxy_header_rejected[i];
    }
    total.readers_stopped += part.readers_stopped;
    total.readers_resumed += part.readers_resumed;
    total.backend_pool_hits += part.backend_pool_hits;
    total.backend_pool_misses += part.backend_pool_misses;
    total.backend_pool_idle_closed += part.backend_pool_idle_closed;
    total.backend_pool_retries += part.backend_pool_retries;
    total.upgrades_ok += part.upgrades_ok;
    total.upgrades_failed += part.upgrades_failed;
}

CountersBoard::CountersBoard(std::uint32_t workers) : latest_(std::max<std::uint32_t>(workers, 1)) {}

void CountersBoard::publish(std::uint32_t index, const DaemonCounters& counters,
                            const std::function<void(const DaemonCounters&)>& sink) {
    const std::lock_guard lock(mutex_);
    latest_.at(index) = counters;
    total_ = DaemonCounters{};
    for (const DaemonCounters& part : latest_) {
        add_counters(total_, part);
    }
    total_.plane = counters.plane;
    sink(total_);
}

}  // namespace splicer::metrics
