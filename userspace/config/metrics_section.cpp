// The `metrics` group: where the Prometheus endpoint listens (metrics/metrics_server.h).

#include <string>
#include <string_view>

#include "config/reader.h"
#include "splicer/config.h"

namespace splicer::config::detail {
namespace {

// The endpoint is meant for a scraper on the same host (or one reached through a tunnel):
// anything else is allowed, with a notice, as every counter and rule name is served to
// whoever can connect.
bool is_loopback(std::string_view host) {
    return host == "localhost" || host == "::1" || host.starts_with("127.");
}

}  // namespace

std::optional<MetricsConfig> read_metrics_section(const libconfig::Setting& metrics,
                                                  Diagnostics& diagnostics) {
    const std::size_t errors_before = diagnostics.error_count();
    MetricsConfig config;
    config.line = line_of(metrics);
    for (int i = 0; i < metrics.getLength(); ++i) {
        const libconfig::Setting& member = metrics[i];
        const std::string_view name = member.getName();
        if (name == "host") {
            if (auto host = read_host(member, diagnostics)) {
                config.address.host = std::move(*host);
                if (!is_loopback(config.address.host)) {
                    diagnostics.notice(member,
                                       "not a loopback address: every counter and rule name is "
                                       "served to whoever can connect");
                }
            }
        } else if (name == "port") {
            if (auto port = read_port(member, diagnostics)) {
                config.address.port = *port;
            }
        } else {
            check_known(member, {"host", "port"}, diagnostics);
        }
    }
    require_member(metrics, "host", diagnostics);
    require_member(metrics, "port", diagnostics);
    if (diagnostics.error_count() != errors_before) {
        return std::nullopt;
    }
    return config;
}

}  // namespace splicer::config::detail
