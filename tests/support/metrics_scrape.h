#pragma once
// The daemon's Prometheus endpoint read as a test compares it: every sample by its
// "name{labels}" key, comments and blank lines left out.

#include <cstdint>
#include <map>
#include <string>

namespace splicer::test {

// "name{labels} value" lines -> value; lines starting with '#' and empty ones are skipped.
std::map<std::string, std::uint64_t> metric_samples(const std::string& text);

// curl of http://127.0.0.1:PORT/metrics (5 s at most), parsed by metric_samples. Throws
// std::runtime_error with curl's output when the request fails.
std::map<std::string, std::uint64_t> scrape_metrics(std::uint16_t port);

}  // namespace splicer::test
