#pragma once
// What the metrics endpoint serves and `splicer stats --json` prints: one list of metric
// families built from a DaemonCounters snapshot, written out as Prometheus text format 0.0.4
// or as JSON. Both come from the same list, so the two always carry the same counters.
// Pure: no I/O, tested on bytes.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "splicer/daemon_counters.h"

namespace splicer::metrics {

struct Sample {
    std::vector<std::pair<std::string_view, std::string>> labels;  // name, value (unescaped)
    std::uint64_t value = 0;
};

struct Family {
    std::string_view name;  // "splicer_connections_accepted_total"
    std::string_view help;
    std::string_view type;  // "counter" | "gauge"
    bool labelled = false;  // JSON: a list of samples, else one number
    std::vector<Sample> samples;
};

std::string_view to_string(PlaneLabel plane);

// Every family, in a fixed order. `version` labels splicer_build_info.
std::vector<Family> families(const DaemonCounters& counters, std::string_view version);

// Prometheus text exposition format 0.0.4 (label values escaped: \\ \" \n).
std::string prometheus_text(const std::vector<Family>& families);
// {"splicer_connections_accepted_total": 3, "splicer_bytes_total": [{"direction": ...,
// "plane": ..., "value": N}, ...], ...}: family name to its value, or to its samples.
// `extra` (already JSON, e.g. the sockmap plane's kernel counters) is added under "kernel".
std::string json_text(const std::vector<Family>& families, std::string_view extra = {});

// Label value escaping of the text format, and JSON string escaping (without quotes).
std::string escape_label_value(std::string_view value);
std::string escape_json(std::string_view value);

}  // namespace splicer::metrics
